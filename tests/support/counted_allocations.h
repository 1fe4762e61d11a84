#pragma once
// Heap allocations counted, so a test can show that a path allocates nothing once warmed up.
// Linking counted_allocations.cc into a test program replaces its global operator new, which is
// program-wide; it only counts.

namespace vigil::testing {

// Allocations through operator new since the program started, on any thread.
long CountedAllocations();

}  // namespace vigil::testing
