//! Upload-time checks: a module must be a valid core module and a WASI preview1 command
//! (exports `_start` and `memory`) that imports only from `wasi_snapshot_preview1`.

use wasmparser::{ExternalKind, Parser, Payload, Validator, WasmFeatures};

/// The only import module an agent may use.
pub const WASI_MODULE: &str = "wasi_snapshot_preview1";

/// Every function of WASI preview1, as the runtime links them. Anything else under
/// [`WASI_MODULE`] would fail to link at run time, so it is refused at upload.
const WASI_FUNCTIONS: &[&str] = &[
    "args_get",
    "args_sizes_get",
    "environ_get",
    "environ_sizes_get",
    "clock_res_get",
    "clock_time_get",
    "fd_advise",
    "fd_allocate",
    "fd_close",
    "fd_datasync",
    "fd_fdstat_get",
    "fd_fdstat_set_flags",
    "fd_fdstat_set_rights",
    "fd_filestat_get",
    "fd_filestat_set_size",
    "fd_filestat_set_times",
    "fd_pread",
    "fd_prestat_get",
    "fd_prestat_dir_name",
    "fd_pwrite",
    "fd_read",
    "fd_readdir",
    "fd_renumber",
    "fd_seek",
    "fd_sync",
    "fd_tell",
    "fd_write",
    "path_create_directory",
    "path_filestat_get",
    "path_filestat_set_times",
    "path_link",
    "path_open",
    "path_readlink",
    "path_remove_directory",
    "path_rename",
    "path_symlink",
    "path_unlink_file",
    "poll_oneoff",
    "proc_exit",
    "proc_raise",
    "sched_yield",
    "random_get",
    "sock_accept",
    "sock_recv",
    "sock_send",
    "sock_shutdown",
];

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
    #[error("import `{WASI_MODULE}::{0}` is not a WASI preview1 function")]
    UnknownWasiImport(String),
}

/// Validates `bytes`. Cost is linear in the module size.
pub fn validate(bytes: &[u8]) -> Result<(), ValidationError> {
    if bytes.len() < 8 || &bytes[0..4] != b"\0asm" {
        return Err(ValidationError::NotWasm);
    }
    if bytes[4..8] != [1, 0, 0, 0] {
        return Err(ValidationError::Component);
    }
    // Threads and shared memory stay off: an agent is a single-threaded command. Multi-memory
    // stays off so the runtime's memory cap is a per-instance cap.
    let mut features = WasmFeatures::default();
    features.remove(
        WasmFeatures::THREADS
            | WasmFeatures::SHARED_EVERYTHING_THREADS
            | WasmFeatures::MULTI_MEMORY,
    );
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
                    match import.ty {
                        wasmparser::TypeRef::Func(_) if WASI_FUNCTIONS.contains(&import.name) => {}
                        _ => {
                            return Err(ValidationError::UnknownWasiImport(import.name.to_owned()));
                        }
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
