//! `pass_loop` with the `vigil` binary's allocator (mimalloc), to compare allocators: run with
//! `MIMALLOC_ARENA_EAGER_COMMIT=0 MIMALLOC_PURGE_DELAY=0` as the binary sets them.

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[path = "pass_loop.rs"]
mod pass_loop;

fn main() {
    pass_loop::main()
}
