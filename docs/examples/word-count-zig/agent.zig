//! Word-Count: a complete ZeroState agent in Zig (0.17). Reads the task input on stdin, logs
//! to stderr, answers one JSON object on stdout and exits 0. Build: see ../build.sh.
const std = @import("std");

pub fn main(init: std.process.Init) !void {
    const io = init.io;

    var in_buf: [4096]u8 = undefined;
    var stdin = std.Io.File.stdin().readerStreaming(io, &in_buf);
    const input = try stdin.interface.allocRemaining(init.arena.allocator(), .limited(4 << 20));

    var words: usize = 0;
    var it = std.mem.tokenizeAny(u8, input, " \t\r\n\x0b\x0c");
    while (it.next()) |_| words += 1;
    const task = init.environ_map.get("ZEROSTATE_TASK_ID") orelse "";

    var err_buf: [256]u8 = undefined;
    var stderr = std.Io.File.stderr().writerStreaming(io, &err_buf);
    try stderr.interface.print("counted {d} words in {d} bytes\n", .{ words, input.len });
    try stderr.interface.flush();

    var out_buf: [256]u8 = undefined;
    var stdout = std.Io.File.stdout().writerStreaming(io, &out_buf);
    try stdout.interface.print("{{\"words\":{d},\"bytes\":{d},\"task_id\":\"{s}\"}}\n", .{ words, input.len, task });
    try stdout.interface.flush();
}
