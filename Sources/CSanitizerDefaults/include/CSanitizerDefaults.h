// Nothing to import: the target only defines the sanitizer runtimes' option hooks (defaults.c).
