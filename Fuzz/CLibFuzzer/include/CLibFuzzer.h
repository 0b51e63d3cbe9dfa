#ifndef CHATMESH_CLIBFUZZER_H
#define CHATMESH_CLIBFUZZER_H

#include <stddef.h>
#include <stdint.h>

/// libFuzzer's driver for programs that bring their own main (LLVM 11+; it lives in
/// libclang_rt.fuzzer_no_main, which Fuzz/run.sh links). SwiftPM names the entry point of a
/// Swift executable <module>_main and points `main` at it, which clashes with the `main` of
/// the usual libclang_rt.fuzzer, so each fuzz target is an ordinary main.swift calling this.
int LLVMFuzzerRunDriver(int *argc, char ***argv, int (*callback)(const uint8_t *data, size_t size));

#endif
