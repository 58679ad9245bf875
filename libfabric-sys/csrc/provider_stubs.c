/*
 * Provider entry points that replace libfabric's own when libfabric-sys links the static archive.
 *
 * Why: Debian builds psm and psm2 into libfabric. Their libraries (libinfinipath.so.4, libpsm2.so.2)
 * each run an ELF constructor that pins the thread to CPU 0 and calibrates the TSC for ~100 ms, so
 * every process linked with libfabric.so waits ~200 ms before main(). Linking libfabric.a and
 * defining these symbols first means the archive members of those providers are never pulled in,
 * so neither PSM library is loaded. A provider whose init function returns NULL is simply not
 * registered (libfabric treats it like a provider that found no hardware).
 *
 * The verbs provider is stubbed too unless the `verbs` cargo feature is on: its init scans
 * /proc/kallsyms twice (dmabuf detection), ~70 ms at the first fi_getinfo.
 */
#include <stddef.h>

struct fi_provider;

struct fi_provider *fi_psm_ini(void) { return NULL; }
struct fi_provider *fi_psm2_ini(void) { return NULL; }

#ifndef LIBFABRIC_SYS_KEEP_VERBS
struct fi_provider *fi_verbs_ini(void) { return NULL; }
#endif
