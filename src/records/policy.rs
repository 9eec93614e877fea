//! The module validation policy, `[agents.validation]`: what an uploaded module may contain.
//! The configuration reads it, the runtime's validator applies it.

use serde::{Deserialize, Serialize};

/// The only import module an agent may use.
pub const WASI_MODULE: &str = "wasi_snapshot_preview1";
/// Every function of WASI preview1, as the runtime links them. Anything else under
/// [`WASI_MODULE`] would fail to link at run time, so it is refused at upload.
pub const WASI_FUNCTIONS: &[&str] = &[
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

/// What an uploaded module may contain: `[agents.validation]` in the configuration. The
/// defaults accept language runtimes of tens of MB with 100k+ functions; the wasm features
/// that break the sandbox's model (threads, shared memory, multiple or 64-bit memories) are
/// refused whatever the policy says.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Policy {
    /// Most 64 KiB pages a memory may declare as its initial size.
    pub max_memory_pages: u64,
    /// Most functions a module may define (imports not counted).
    pub max_functions: u32,
    /// Largest single function body, in bytes: the compile time of one function grows with
    /// its size, so this bounds compile bombs.
    pub max_function_bytes: u32,
    /// Deepest nesting of blocks, loops and ifs in a function. Compile time grows with the
    /// square of the depth (50,000 nested blocks take about a minute to compile).
    pub max_nesting_depth: u32,
    /// Most elements a table may declare as its initial size; also the table size each
    /// pooled instance slot reserves.
    pub max_table_elements: u64,
    /// Most bytes of data segments in all.
    pub max_data_bytes: u64,
    /// The `wasi_snapshot_preview1` functions a module may import.
    pub allowed_imports: Vec<String>,
}

impl Default for Policy {
    fn default() -> Self {
        Self {
            max_memory_pages: 16_384,
            max_functions: 200_000,
            max_function_bytes: 2 * 1024 * 1024,
            max_nesting_depth: 2_000,
            max_table_elements: 100_000,
            max_data_bytes: 64 * 1024 * 1024,
            allowed_imports: WASI_FUNCTIONS.iter().map(|f| f.to_string()).collect(),
        }
    }
}

impl Policy {
    /// The first entry of `allowed_imports` that is not a WASI preview1 function, if any.
    pub fn unknown_import(&self) -> Option<&str> {
        self.allowed_imports
            .iter()
            .map(String::as_str)
            .find(|f| !WASI_FUNCTIONS.contains(f))
    }
}
