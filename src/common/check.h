#pragma once
// VIGIL_CHECK: an always-on assertion for bugs (never for bad input, which gets a Status).

#include <cstdio>
#include <cstdlib>

#define VIGIL_CHECK(cond, msg)                                                           \
  do {                                                                                   \
    if (!(cond)) [[unlikely]] {                                                          \
      std::fprintf(stderr, "%s:%d: check failed: %s: %s\n", __FILE__, __LINE__, #cond, \
                   msg);                                                                 \
      std::abort();                                                                      \
    }                                                                                    \
  } while (0)
