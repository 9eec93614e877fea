//! Synthetic agent modules of any size, for the upload and restart benchmarks: `functions`
//! functions of about 600 bytes of ordinary integer code each (arithmetic over locals, a loop,
//! a call), so 50,000 of them make a 30 MB module. `salt` changes the constants and a custom
//! section, so modules of different salts hash differently.

use wasm_encoder::{
    BlockType, CodeSection, CustomSection, ExportKind, ExportSection, Function, FunctionSection,
    MemorySection, MemoryType, Module, TypeSection, ValType,
};

pub fn module(functions: u32, salt: u32) -> Vec<u8> {
    let mut types = TypeSection::new();
    types
        .ty()
        .function([ValType::I32, ValType::I32], [ValType::I32]);
    types.ty().function([], []);
    let mut funcs = FunctionSection::new();
    for _ in 0..functions {
        funcs.function(0);
    }
    funcs.function(1);
    let mut memory = MemorySection::new();
    memory.memory(MemoryType {
        minimum: 1,
        maximum: None,
        memory64: false,
        shared: false,
        page_size_log2: None,
    });
    let mut exports = ExportSection::new();
    exports.export("memory", ExportKind::Memory, 0);
    exports.export("_start", ExportKind::Func, functions);

    let mut code = CodeSection::new();
    for i in 0..functions {
        let mut f = Function::new([(2, ValType::I32)]);
        let mut sink = f.instructions();
        for j in 0..30u32 {
            let k = i.wrapping_mul(31).wrapping_add(j * 7).wrapping_add(salt) as i32;
            sink.local_get(0)
                .i32_const(k)
                .i32_mul()
                .local_get(1)
                .i32_xor()
                .local_set(2)
                .local_get(2)
                .local_get(3)
                .i32_add()
                .local_set(3);
        }
        if i > 0 {
            sink.local_get(3).local_get(2).call(i - 1).local_set(3);
        }
        sink.loop_(BlockType::Empty)
            .local_get(2)
            .i32_const(1)
            .i32_sub()
            .local_tee(2)
            .br_if(0)
            .end()
            .local_get(3)
            .end();
        code.function(&f);
    }
    let mut start = Function::new([]);
    start.instructions().end();
    code.function(&start);

    let mut module = Module::new();
    module
        .section(&types)
        .section(&funcs)
        .section(&memory)
        .section(&exports)
        .section(&code)
        .section(&CustomSection {
            name: "salt".into(),
            data: salt.to_le_bytes().to_vec().into(),
        });
    module.finish()
}
