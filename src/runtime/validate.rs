//! Upload-time checks. A module must be a valid core module and a WASI preview1 command
//! (exports `_start` and `memory`) that imports only allowed `wasi_snapshot_preview1`
//! functions, within the [`Policy`] the server is configured with.
//!
//! Two passes: [`check`] runs while the upload waits and covers everything except function
//! bodies (declarations, imports, exports, sizes: fast even for a 30 MB module); [`validate`]
//! checks every function body too, and runs in the background before compilation.

use wasmparser::{
    ExternalKind, FuncValidatorAllocations, Parser, Payload, ValidPayload, Validator, WasmFeatures,
};

use crate::records::{Policy, WASI_FUNCTIONS, WASI_MODULE};

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum ValidationError {
    #[error("not a WebAssembly module (bad magic number)")]
    NotWasm,
    #[error("components are not supported; upload a core module built for wasm32-wasi (preview1)")]
    Component,
    /// wasmparser's reason, with its byte offset.
    #[error("{0}")]
    Invalid(String),
    #[error(
        "import `{module}::{name}` is not allowed; agents may import only from `{WASI_MODULE}`"
    )]
    DisallowedImport { module: String, name: String },
    #[error(
        "import `{WASI_MODULE}::{0}` is not allowed by this server (rule agents.validation.allowed_imports)"
    )]
    ImportNotAllowed(String),
    #[error("import `{WASI_MODULE}::{0}` is not a WASI preview1 function")]
    UnknownWasiImport(String),
    #[error("missing export `_start`: agents must be WASI commands (a `main` function)")]
    NoStart,
    #[error("missing export `memory`")]
    NoMemory,
    #[error("shared memory (threads) is not allowed")]
    SharedMemory,
    /// A [`Policy`] limit; `rule` is its configuration key.
    #[error("{what} is {actual}; the limit is {limit} (rule agents.validation.{rule})")]
    Limit {
        rule: &'static str,
        what: String,
        actual: u64,
        limit: u64,
    },
}

/// The wasm features agents may use: the defaults minus threads and shared memory (an agent is
/// a single-threaded command), multi-memory (so the runtime's memory cap is a per-instance cap),
/// memory64, and what the runtime is built without (GC, exception handling, stack switching).
/// The build's last step, [`crate::runtime::Executor::validate`], asks wasmtime itself.
fn features() -> WasmFeatures {
    let mut features = WasmFeatures::default();
    features.remove(
        WasmFeatures::THREADS
            | WasmFeatures::SHARED_EVERYTHING_THREADS
            | WasmFeatures::MULTI_MEMORY
            | WasmFeatures::MEMORY64
            | WasmFeatures::GC
            | WasmFeatures::EXCEPTIONS
            | WasmFeatures::LEGACY_EXCEPTIONS
            | WasmFeatures::STACK_SWITCHING,
    );
    features
}

/// What [`check`] learned about a module.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ModuleInfo {
    /// Functions defined (imports not counted).
    pub functions: u32,
    /// Bytes of the code section.
    pub code_bytes: u64,
    /// Initial size of the memory, in 64 KiB pages.
    pub memory_pages: u64,
}

/// Checks everything but the function bodies, against `policy`. Cost is linear in the number
/// of declarations, not in the code size.
pub fn check(bytes: &[u8], policy: &Policy) -> Result<ModuleInfo, ValidationError> {
    if bytes.len() < 8 || &bytes[0..4] != b"\0asm" {
        return Err(ValidationError::NotWasm);
    }
    if bytes[4..8] != [1, 0, 0, 0] {
        return Err(ValidationError::Component);
    }
    let invalid = |e: wasmparser::BinaryReaderError| ValidationError::Invalid(e.to_string());
    let limit = |rule, what: String, actual: u64, limit: u64| {
        if actual > limit {
            Err(ValidationError::Limit {
                rule,
                what,
                actual,
                limit,
            })
        } else {
            Ok(())
        }
    };
    let mut validator = Validator::new_with_features(features());
    let mut info = ModuleInfo {
        functions: 0,
        code_bytes: 0,
        memory_pages: 0,
    };
    let (mut has_start, mut has_memory, mut data_bytes) = (false, false, 0u64);
    for payload in Parser::new(0).parse_all(bytes) {
        let payload = payload.map_err(invalid)?;
        // Declarations are validated here; bodies are counted and measured, and left to
        // [`validate`].
        if let ValidPayload::Func(_, body) = validator.payload(&payload).map_err(invalid)? {
            info.functions += 1;
            limit(
                "max_functions",
                "the number of functions".into(),
                info.functions.into(),
                policy.max_functions.into(),
            )?;
            let size = body.range().len() as u64;
            limit(
                "max_function_bytes",
                format!("function {} ({size} bytes)", info.functions - 1),
                size,
                policy.max_function_bytes.into(),
            )?;
        }
        match payload {
            Payload::ImportSection(reader) => {
                for import in reader.into_imports() {
                    let import = import.map_err(invalid)?;
                    if import.module != WASI_MODULE {
                        return Err(ValidationError::DisallowedImport {
                            module: import.module.to_owned(),
                            name: import.name.to_owned(),
                        });
                    }
                    let is_function = matches!(import.ty, wasmparser::TypeRef::Func(_));
                    if !is_function || !WASI_FUNCTIONS.contains(&import.name) {
                        return Err(ValidationError::UnknownWasiImport(import.name.to_owned()));
                    }
                    if !policy.allowed_imports.iter().any(|a| a == import.name) {
                        return Err(ValidationError::ImportNotAllowed(import.name.to_owned()));
                    }
                }
            }
            Payload::MemorySection(reader) => {
                for memory in reader {
                    let memory = memory.map_err(invalid)?;
                    if memory.shared {
                        return Err(ValidationError::SharedMemory);
                    }
                    limit(
                        "max_memory_pages",
                        "the memory's initial size in 64 KiB pages".into(),
                        memory.initial,
                        policy.max_memory_pages,
                    )?;
                    info.memory_pages = info.memory_pages.max(memory.initial);
                }
            }
            Payload::TableSection(reader) => {
                for table in reader {
                    limit(
                        "max_table_elements",
                        "a table's initial size".into(),
                        table.map_err(invalid)?.ty.initial,
                        policy.max_table_elements,
                    )?;
                }
            }
            Payload::DataSection(reader) => {
                for data in reader {
                    data_bytes += data.map_err(invalid)?.data.len() as u64;
                    limit(
                        "max_data_bytes",
                        "the size of the data segments".into(),
                        data_bytes,
                        policy.max_data_bytes,
                    )?;
                }
            }
            Payload::CodeSectionStart { size, .. } => info.code_bytes = size.into(),
            Payload::ExportSection(reader) => {
                for export in reader {
                    let export = export.map_err(invalid)?;
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
    Ok(info)
}

/// Validates every function body of a module [`check`] accepted, and their nesting depth.
/// Cost is linear in the code size.
pub fn validate(bytes: &[u8], policy: &Policy) -> Result<(), ValidationError> {
    let invalid = |e: wasmparser::BinaryReaderError| ValidationError::Invalid(e.to_string());
    let mut validator = Validator::new_with_features(features());
    let mut allocs = FuncValidatorAllocations::default();
    let mut index = 0u32;
    for payload in Parser::new(0).parse_all(bytes) {
        let ValidPayload::Func(func, body) = validator
            .payload(&payload.map_err(invalid)?)
            .map_err(invalid)?
        else {
            continue;
        };
        // `FuncValidator::validate`, with a depth check after each operator.
        let mut func = func.into_validator(allocs);
        let mut reader = body.get_binary_reader();
        func.read_locals(&mut reader).map_err(invalid)?;
        reader.set_features(features());
        while !reader.eof() {
            reader
                .visit_operator(&mut func.visitor(reader.original_position()))
                .map_err(invalid)?
                .map_err(invalid)?;
            // The function's own frame is not a block.
            let depth = func.control_stack_height().saturating_sub(1);
            if depth > policy.max_nesting_depth {
                return Err(ValidationError::Limit {
                    rule: "max_nesting_depth",
                    what: format!("the block nesting of function {index}"),
                    actual: depth.into(),
                    limit: policy.max_nesting_depth.into(),
                });
            }
        }
        reader
            .finish_expression(&func.visitor(reader.original_position()))
            .map_err(invalid)?;
        allocs = func.into_allocations();
        index += 1;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn module(wat: &str) -> Vec<u8> {
        wat::parse_str(wat).unwrap()
    }

    fn checked(wat: &str) -> Result<ModuleInfo, ValidationError> {
        check(&module(wat), &Policy::default())
    }

    #[test]
    fn accepts_a_minimal_wasi_command() {
        let m = module(
            r#"(module
            (import "wasi_snapshot_preview1" "proc_exit" (func (param i32)))
            (memory (export "memory") 1)
            (func (export "_start")))"#,
        );
        let info = check(&m, &Policy::default()).unwrap();
        assert_eq!(info.functions, 1);
        assert_eq!(validate(&m, &Policy::default()), Ok(()));
    }

    #[test]
    fn rejections_name_their_reason() {
        assert_eq!(
            check(b"hello world", &Policy::default()),
            Err(ValidationError::NotWasm)
        );
        let err = checked(
            r#"(module
            (import "env" "system" (func))
            (memory (export "memory") 1)
            (func (export "_start")))"#,
        )
        .unwrap_err();
        assert!(err.to_string().contains("env::system"), "{err}");
        let no_start = r#"(module (memory (export "memory") 1) (func (export "main")))"#;
        assert_eq!(checked(no_start), Err(ValidationError::NoStart));
        let no_memory = module(r#"(module (func (export "_start")))"#);
        assert_eq!(
            check(&no_memory, &Policy::default()),
            Err(ValidationError::NoMemory)
        );
        let shared = r#"(module (memory (export "memory") 1 1 shared) (func (export "_start")))"#;
        assert!(checked(shared).is_err());
        // Exception handling: the runtime is built without it.
        let throws =
            r#"(module (tag $oops) (memory (export "memory") 1) (func (export "_start")))"#;
        assert!(
            checked(throws)
                .unwrap_err()
                .to_string()
                .contains("exceptions")
        );
        let mut truncated = no_memory.clone();
        truncated.truncate(truncated.len() - 3);
        assert!(matches!(
            check(&truncated, &Policy::default()),
            Err(ValidationError::Invalid(_))
        ));
    }

    #[test]
    fn function_bodies_are_validated_by_the_second_pass_only() {
        let bad_body = module(
            r#"(module (memory (export "memory") 1)
            (func (export "_start") (drop (i32.const 1)) (drop)))"#,
        );
        assert!(check(&bad_body, &Policy::default()).is_ok());
        assert!(matches!(
            validate(&bad_body, &Policy::default()),
            Err(ValidationError::Invalid(m)) if m.contains("type mismatch")
        ));
        let deep = module(&format!(
            r#"(module (memory (export "memory") 1) (func (export "_start") {} {}))"#,
            "block ".repeat(2_001),
            "end ".repeat(2_001)
        ));
        assert!(check(&deep, &Policy::default()).is_ok());
        let err = validate(&deep, &Policy::default()).unwrap_err().to_string();
        assert!(err.contains("agents.validation.max_nesting_depth"), "{err}");
    }

    #[test]
    fn each_policy_limit_names_its_rule() {
        let policy = Policy {
            max_memory_pages: 4,
            max_functions: 2,
            max_function_bytes: 64,
            max_nesting_depth: 10,
            max_table_elements: 10,
            max_data_bytes: 8,
            allowed_imports: vec!["fd_write".into()],
        };
        let cases = [
            (
                r#"(module (memory (export "memory") 5) (func (export "_start")))"#,
                "max_memory_pages",
            ),
            (
                r#"(module (memory (export "memory") 1) (func (export "_start")) (func) (func))"#,
                "max_functions",
            ),
            (
                r#"(module (memory (export "memory") 1) (table 11 funcref) (func (export "_start")))"#,
                "max_table_elements",
            ),
            (
                r#"(module (memory (export "memory") 1) (data (i32.const 0) "123456789") (func (export "_start")))"#,
                "max_data_bytes",
            ),
            (
                r#"(module (import "wasi_snapshot_preview1" "proc_exit" (func (param i32)))
                (memory (export "memory") 1) (func (export "_start")))"#,
                "allowed_imports",
            ),
        ];
        for (wat, rule) in cases {
            let err = check(&module(wat), &policy).unwrap_err().to_string();
            assert!(
                err.contains(&format!("agents.validation.{rule}")),
                "{rule}: {err}"
            );
        }
        let long_body = format!(
            r#"(module (memory (export "memory") 1) (func (export "_start") {}))"#,
            "(drop (i32.const 1))".repeat(40)
        );
        let err = check(&module(&long_body), &policy).unwrap_err().to_string();
        assert!(err.contains("max_function_bytes"), "{err}");
        assert_eq!(policy.unknown_import(), None);
        let typo = Policy {
            allowed_imports: vec!["fd_wrte".into()],
            ..Policy::default()
        };
        assert_eq!(typo.unknown_import(), Some("fd_wrte"));
    }
}
