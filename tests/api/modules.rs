//! Small hostile and ordinary agents in WAT, shared by the API tests and the executor bench
//! (which includes this file by path).

/// WAT for an agent that copies up to 64 KiB of stdin to stdout and exits 0.
pub const ECHO_AGENT: &str = r#"(module
  (import "wasi_snapshot_preview1" "fd_read" (func $read (param i32 i32 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "fd_write" (func $write (param i32 i32 i32 i32) (result i32)))
  (memory (export "memory") 2)
  (func (export "_start")
    (i32.store (i32.const 0) (i32.const 1024))
    (i32.store (i32.const 4) (i32.const 65536))
    (drop (call $read (i32.const 0) (i32.const 0) (i32.const 1) (i32.const 8)))
    (i32.store (i32.const 4) (i32.load (i32.const 8)))
    (drop (call $write (i32.const 1) (i32.const 0) (i32.const 1) (i32.const 12)))))"#;

/// WAT for an agent that never returns.
pub const LOOP_AGENT: &str =
    r#"(module (memory (export "memory") 1) (func (export "_start") (loop (br 0))))"#;

/// WAT for an agent that sleeps an hour in the host through `poll_oneoff` (a relative clock
/// subscription), as `sleep()` in a WASI libc does.
pub const SLEEP_AGENT: &str = r#"(module
  (import "wasi_snapshot_preview1" "poll_oneoff" (func $poll (param i32 i32 i32 i32) (result i32)))
  (memory (export "memory") 1)
  (func (export "_start")
    (i32.store8 (i32.const 8) (i32.const 0))
    (i32.store (i32.const 16) (i32.const 1))
    (i64.store (i32.const 24) (i64.const 3600000000000))
    (drop (call $poll (i32.const 0) (i32.const 64) (i32.const 1) (i32.const 128)))))"#;

/// WAT for an agent that grows its memory until something stops it.
pub const GROW_BOMB_AGENT: &str = r#"(module (memory (export "memory") 1)
  (func (export "_start") (loop (br_if 0 (i32.ne (memory.grow (i32.const 256)) (i32.const -1))))))"#;

/// WAT for an agent that recurses without end.
pub const RECURSE_AGENT: &str =
    r#"(module (memory (export "memory") 1) (func $f (export "_start") (call $f)))"#;
