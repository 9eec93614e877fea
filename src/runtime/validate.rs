//! Upload-time checks: a module must be a valid core module and a WASI preview1 command
//! (exports `_start` and `memory`) that imports only from `wasi_snapshot_preview1`.

use wasmparser::{ExternalKind, Parser, Payload, Validator, WasmFeatures};

/// The only import module an agent may use.
pub const WASI_MODULE: &str = "wasi_snapshot_preview1";

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum ValidationError {
    #[error("not a WebAssembly module (bad magic number)")]
    NotWasm,
    #[error("components are not supported; upload a core module built for wasm32-wasi (preview1)")]
    Component,
    #[error("invalid module: {0}")]
    Invalid(String),
    #[error(
        "import `{module}::{name}` is not allowed; agents may import only from `{WASI_MODULE}`"
    )]
    DisallowedImport { module: String, name: String },
    #[error("missing export `_start`: agents must be WASI commands (a `main` function)")]
    NoStart,
    #[error("missing export `memory`")]
    NoMemory,
    #[error("shared memory (threads) is not allowed")]
    SharedMemory,
}

/// Validates `bytes`. Cost is linear in the module size.
pub fn validate(bytes: &[u8]) -> Result<(), ValidationError> {
    if bytes.len() < 8 || &bytes[0..4] != b"\0asm" {
        return Err(ValidationError::NotWasm);
    }
    if bytes[4..8] != [1, 0, 0, 0] {
        return Err(ValidationError::Component);
    }
    // Threads and shared memory stay off: an agent is a single-threaded command.
    let mut features = WasmFeatures::default();
    features.remove(WasmFeatures::THREADS | WasmFeatures::SHARED_EVERYTHING_THREADS);
    Validator::new_with_features(features)
        .validate_all(bytes)
        .map_err(|e| ValidationError::Invalid(e.to_string()))?;

    let (mut has_start, mut has_memory) = (false, false);
    for payload in Parser::new(0).parse_all(bytes) {
        match payload.map_err(|e| ValidationError::Invalid(e.to_string()))? {
            Payload::ImportSection(reader) => {
                for import in reader.into_imports() {
                    let import = import.map_err(|e| ValidationError::Invalid(e.to_string()))?;
                    if import.module != WASI_MODULE {
                        return Err(ValidationError::DisallowedImport {
                            module: import.module.to_owned(),
                            name: import.name.to_owned(),
                        });
                    }
                    if let wasmparser::TypeRef::Memory(m) = import.ty
                        && m.shared
                    {
                        return Err(ValidationError::SharedMemory);
                    }
                }
            }
            Payload::MemorySection(reader) => {
                for memory in reader {
                    if memory
                        .map_err(|e| ValidationError::Invalid(e.to_string()))?
                        .shared
                    {
                        return Err(ValidationError::SharedMemory);
                    }
                }
            }
            Payload::ExportSection(reader) => {
                for export in reader {
                    let export = export.map_err(|e| ValidationError::Invalid(e.to_string()))?;
                    match (export.name, export.kind) {
                        ("_start", ExternalKind::Func) => has_start = true,
                        ("memory", ExternalKind::Memory) => has_memory = true,
                        _ => {}
                    }
                }
            }
            _ => {}
        }
    }
    if !has_start {
        return Err(ValidationError::NoStart);
    }
    if !has_memory {
        return Err(ValidationError::NoMemory);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn module(wat: &str) -> Vec<u8> {
        wat::parse_str(wat).unwrap()
    }

    #[test]
    fn accepts_a_minimal_wasi_command() {
        let m = module(
            r#"(module
            (import "wasi_snapshot_preview1" "proc_exit" (func (param i32)))
            (memory (export "memory") 1)
            (func (export "_start")))"#,
        );
        assert_eq!(validate(&m), Ok(()));
    }

    #[test]
    fn rejections_name_their_reason() {
        assert_eq!(validate(b"hello world"), Err(ValidationError::NotWasm));
        let env_import = module(
            r#"(module
            (import "env" "system" (func))
            (memory (export "memory") 1)
            (func (export "_start")))"#,
        );
        let err = validate(&env_import).unwrap_err();
        assert!(err.to_string().contains("env::system"), "{err}");
        let no_start = module(r#"(module (memory (export "memory") 1) (func (export "main")))"#);
        assert_eq!(validate(&no_start), Err(ValidationError::NoStart));
        let no_memory = module(r#"(module (func (export "_start")))"#);
        assert_eq!(validate(&no_memory), Err(ValidationError::NoMemory));
        let shared =
            module(r#"(module (memory (export "memory") 1 1 shared) (func (export "_start")))"#);
        assert!(validate(&shared).is_err());
        let mut truncated = no_memory.clone();
        truncated.truncate(truncated.len() - 3);
        assert!(matches!(
            validate(&truncated),
            Err(ValidationError::Invalid(_))
        ));
    }
}
