/*
 * Loads a program's code the way Python loads an extension: dlopen with
 * RTLD_LOCAL, NCCL coming in privately as that library's dependency, long
 * after the preloaded shim. Then runs its entry point.
 *
 * usage: late_load LIBRARY ARGS...
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <stdio.h>
#include <string.h>

typedef int (*entry_t)(int, char**);

int main(int argc, char** argv) {
  void* library;
  void* symbol;
  entry_t entry;
  if (argc < 2) {
    fprintf(stderr, "usage: %s LIBRARY ARGS...\n", argv[0]);
    return 2;
  }
  library = dlopen(argv[1], RTLD_NOW | RTLD_LOCAL);
  if (library == NULL) {
    fprintf(stderr, "late_load: %s\n", dlerror());
    return 1;
  }
  symbol = dlsym(library, "shim_step_main");
  if (symbol == NULL) {
    fprintf(stderr, "late_load: %s\n", dlerror());
    return 1;
  }
  memcpy(&entry, &symbol, sizeof(entry));
  return entry(argc - 1, argv + 1);
}
