#pragma once
// Loading cache lines ahead of their use, for state scattered over a large heap.
//
// A software prefetch is a hint the CPU may drop. On the development machine (a virtual
// machine; hundreds of MB of per-key state in 4 KiB pages) prefetches of lines on pages the TLB
// did not hold mostly arrived too late, while plain loads that do not depend on each other
// overlapped: the CPU keeps many of them in flight. So the first line of an object is loaded
// (LoadLine) in a pass over a batch, and its further lines, on the page now known to the TLB,
// are prefetched.

namespace vigil {

// Reads one byte at `p` for its side effect: the line is in cache once the load completes.
inline void LoadLine(const void* p) { (void)*static_cast<const volatile char*>(p); }

}  // namespace vigil
