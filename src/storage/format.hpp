// The on-disk format of the segmented log. This comment is the specification.
//
// DIRECTORY
//   A log directory holds segment files, the hard-state file and the snapshot store:
//     open-SSSSSSSSSSSSSSSSSSSS.log         a segment being written, or prepared for writing;
//                                           S is a decimal sequence number, 20 digits
//     FFFFFFFFFFFFFFFFFFFF-LLLLLLLLLLLLLLLLLLLL.log
//                                           a closed segment holding exactly the entries
//                                           F..L (decimal, 20 digits each)
//     hardstate                             see hard_state.hpp
//     lock                                  empty; an open log holds an exclusive flock on it
//                                           (its creation needs no directory fsync: nothing
//                                           is read from it). With io_uring the lock file is
//                                           registered with the ring, so a killed process keeps
//                                           the lock until its last write has landed
//     extent                                the log's extent, below
//     snapshots/                            see snapshot_store.hpp
//   Every create, rename and delete of a file is followed by an fsync of the directory.
//
// SEGMENT FILE
//   A segment is created ahead of use (off the hot path) at its full size, either filled with
//   zeros ("pre-written") or fallocated; either way a freshly prepared file reads as zeros.
//   All integers are little-endian. Offsets are bytes from the start of the file.
//
//   Segment header, 32 bytes at offset 0, written together with the segment's first batch:
//     0   8  magic "coraftLG"
//     8   4  format version, 2
//     12  4  CRC32C of bytes 0..31 computed with this field zero
//     16  8  index of the first entry in the segment (>= 1)
//     24  4  tear window: the largest number of bytes one write batch may span (batch_bytes_max
//            of the writer); recovery uses it, see below
//     28  4  the size the file was prepared at, in 512-byte units (rounded down); an open
//            segment shorter than that was truncated: corruption
//   A header of 32 zero bytes marks a prepared segment that was never written.
//
//   Records follow from offset 32, back to back. Each record starts at an 8-byte aligned
//   offset and is:
//     0   4  payload length P in bytes
//     4   4  CRC32C over bytes 0..3, then the P payload bytes, then bytes 8..31 of this header
//     8   8  term (>= 1)
//     16  8  index: the segment's first index for the first record, then +1 per record
//     24  1  entry type (0 normal, 1 noop, 2 config)
//     25  1  flags: 1 when the record is the last of its write batch, else 0
//     26  2  reserved, zero
//     28  4  the record's place in its write batch: 0 for the batch's first record, then +1
//     32  P  payload
//     ..     zero padding up to the next multiple of 8
//   The data of a segment ends at a record header of 32 zero bytes, at zero bytes running to the
//   end of the file when fewer than 32 remain, or at the end of the file.
//
// WRITING
//   One batch at a time is in flight: a gathered write of consecutive records (and, for the
//   first batch of a segment, the segment header) followed by fdatasync. A batch never crosses
//   a segment and never spans more than the tear window. The next batch starts only after the
//   previous one is durable, so at any moment at most one batch, in the newest segment, may be
//   partly on disk.
//   A batch whose extent, rounded out to 4 KiB blocks, fits the writer's direct_bytes_max is
//   written with O_DIRECT as whole blocks, made durable by RWF_DSYNC or a linked fdatasync:
//   the first block starts with the segment's bytes already on disk before the batch,
//   rewritten unchanged, and the last ends with zeros over the prepared file's zeros. That
//   extent never exceeds the tear window, so a crash during it leaves a torn batch as described
//   below; the bytes before the batch read the same whichever of their old or new copy
//   survives.
//   When a segment is full it is renamed to its closed name F-L. Truncating a suffix renames
//   the segment holding the new last entry to F-L with the smaller L (deleting later segments
//   first, newest first), so bytes past L in a closed segment are never read. Compaction
//   deletes whole closed segments, oldest first.
//
// WHAT A CRASH LEAVES BEHIND
//   The disk is assumed to write each aligned 512-byte sector whole or not at all (a torn write
//   tears between sectors, never inside one).
//   - Closed segments and all batches before the last one are durable and valid; every batch
//     ends with a record flagged as its last.
//   - The last open segment may end with a torn batch: any mix of sectors holding the new
//     batch's bytes and sectors still reading as zeros, all inside one tear window starting at
//     the batch's first byte. A sector the batch did not reach reads as zeros over all its bytes
//     from the batch's start on. A segment's header shares its sector with its first record and
//     is written with its first batch, so a torn header is all zeros, never garbage.
//   - A crash during rollover may leave the full segment still named open-N beside the next.
//   - Prepared segments never written are zeros from end to end.
//
// EXTENT FILE ("extent"): what the log must hold, known apart from the segment files, so that a
//   missing, emptied or renamed segment at either end is found. 64 bytes, replaced whole (written
//   as extent.tmp, synced, renamed, directory synced), little-endian:
//     0   8  magic "coraftEX"
//     8   4  version, 1
//     12  4  CRC32C of bytes 0..63 computed with this field zero
//     16  8  first: the log's first index must be at most this (0: no bound)
//     24  8  closed_last: the log's last index must be at least this
//     32  8  active_seq: N of the segment open-N being written (0: none)
//     40  8  active_first: the first index written into open-N
//     48 16  zero
//   Every open writes it after recovery (first and last index, no active segment). A rollover
//   writes it after renaming the full segment, naming the new active segment and the full one's
//   last index. Truncation (and the cut of a failed append) and compaction write it before they
//   delete or rename segments, so it never claims more than the files hold, even after a crash.
//   Checks on open (skipped with the repair option): the file must exist once any segment holds
//   data; the log must start at or before `first` and end at or after `closed_last`; when
//   open-N is named and gone, a closed segment must start at active_first and hold only zeros
//   past its last entry (a full segment closed at rollover); when it exists it must not be
//   shorter than a segment header.
//
// RECOVERY (on open)
//   Segments are ordered by first index and must be contiguous: each starts one past the
//   previous one's last entry. Records are checked for CRC, length bounds, reserved bytes,
//   type, flags, consecutive index, non-decreasing term and consecutive places in their batch.
//   - A closed segment F-L must hold valid records F..L; anything past L is ignored. Its header
//     must be valid: a zero header is corruption.
//   - An open segment that is all zeros is prepared and unused. One with a zero header but data
//     elsewhere is corruption unless it is the newest open segment and its data can be its
//     torn first batch: the header's sector is all zeros, every nonzero byte lies within the
//     tear window (of the other segments, or the reader's batch_bytes_max) and every valid
//     record found there belongs to the first batch. Then the file is deleted.
//   - An open segment that is not the newest must end cleanly (zero header or end of file).
//   - In the newest open segment, the first invalid or zero header at offset X ends the data.
//     The batch in flight at the crash starts at B, the first byte of the first batch not
//     closed by a record flagged as its last (offset 0 for a segment's first batch). The bytes
//     from X on are a torn tail only when all of these hold:
//       * the failure at X is one a tear can cause (CRC mismatch, or a record cut off by the
//         end of the file; not a valid record with a wrong index, term, type, flags or place,
//         nor a length over the limit, as the length shares its sector with the header),
//       * some sector of the record at X reads as zeros from B on (a sector the batch never
//         reached), or the record runs past the end of the file,
//       * every byte from B + tear window on is zero,
//       * every valid record found after X (at any 8-byte aligned offset) belongs to the batch
//         starting at B (its index minus its place in the batch is that batch's first index).
//     Then X..end is cut off (the file is truncated at X and the segment closed) and reported
//     with the file name and offset X; the cut holds only the unacknowledged batch in flight.
//     Otherwise the log refuses to open, naming the file and offset X. An acknowledged last
//     batch whose sectors were later zeroed whole by the disk looks exactly like a torn one and
//     is cut the same way: it cannot be told apart without another sync per batch.
//   - Any other damage refuses to open, with an error naming the file and offset. With the
//     repair option the log is instead cut at the first bad record: later segments are deleted
//     and the damaged one is truncated.
//   - Every open segment holding data is fsynced (a killed writer may have left its last batch
//     in the page cache only), then closed under its F-L name, so writing always
//     resumes in a fresh segment. Of the prepared, never written segments, the newest of the
//     configured size is kept to be written next; the others are deleted.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include <coraft/entry.hpp>
#include <coraft/types.hpp>

namespace coraft::storage {

inline constexpr std::size_t segment_header_bytes = 32;
inline constexpr std::size_t record_header_bytes = 32;
inline constexpr std::uint32_t format_version = 2;
inline constexpr std::uint8_t record_flag_batch_end = 1;
// The unit a disk writes whole (see WHAT A CRASH LEAVES BEHIND).
inline constexpr std::uint64_t tear_sector_bytes = 512;
inline constexpr char segment_magic[8] = {'c', 'o', 'r', 'a', 'f', 't', 'L', 'G'};
// No record payload is ever larger than this, whatever the options say.
inline constexpr std::uint32_t record_payload_bytes_limit = 1u << 30;

[[nodiscard]] constexpr std::uint64_t pad8(std::uint64_t n) noexcept {
  return (n + 7) & ~std::uint64_t{7};
}
// Bytes one record occupies on disk, padding included.
[[nodiscard]] constexpr std::uint64_t record_disk_bytes(std::uint64_t payload) noexcept {
  return record_header_bytes + pad8(payload);
}

struct SegmentHeader {
  Index first_index;
  std::uint32_t tear_window_bytes = 0;
  std::uint32_t prepared_sectors = 0;  // the file's prepared size / 512
};

void encode_segment_header(const SegmentHeader& h, std::byte out[segment_header_bytes]) noexcept;

// Fills a record header for `e` (payload length and CRC included), not flagged as its batch's
// last. Returns the CRC over the length and the payload, for mark_batch_end.
std::uint32_t encode_record_header(const Entry& e, std::uint32_t batch_pos,
                                   std::byte out[record_header_bytes]) noexcept;
// Flags an encoded record header as the last of its batch; `crc_head` is what encoding returned.
void mark_batch_end(std::byte header[record_header_bytes], std::uint32_t crc_head) noexcept;

[[nodiscard]] bool all_zero(std::span<const std::byte> bytes) noexcept;

struct LogExtent {
  Index first{0};
  Index closed_last{0};
  std::uint64_t active_seq = 0;
  Index active_first{0};
};
inline constexpr std::size_t extent_file_bytes = 64;
inline constexpr const char* extent_file_name = "extent";
void encode_extent(const LogExtent& e, std::byte out[extent_file_bytes]) noexcept;
// Nullopt (and why) when the bytes are not a valid extent file.
[[nodiscard]] std::optional<LogExtent> decode_extent(std::span<const std::byte> bytes,
                                                     std::string* why);

// A segment's name, parsed.
struct SegmentName {
  bool open = false;
  std::uint64_t seq = 0;  // open segments
  Index first;            // closed segments
  Index last;             // closed segments
};
[[nodiscard]] std::optional<SegmentName> parse_segment_name(std::string_view name);
[[nodiscard]] std::string open_segment_name(std::uint64_t seq);
[[nodiscard]] std::string closed_segment_name(Index first, Index last);

struct RecordInfo {
  Index index;
  Term term;
  EntryType type = EntryType::normal;
  std::uint64_t offset = 0;     // of the record header
  std::uint32_t length = 0;     // payload bytes
  std::uint32_t batch_pos = 0;  // place in its write batch
  bool batch_end = false;       // last record of its write batch
};

// What scanning one segment's bytes found.
struct SegmentScan {
  bool zero_header = false;  // the header (or the whole short file) is zero bytes
  bool unused = false;       // the whole file is zero bytes: prepared, never written
  bool header_ok = false;
  SegmentHeader header;
  std::vector<RecordInfo> records;
  std::uint64_t end_offset = 0;  // first byte past the last valid record
  // Set when the data ended at something other than a zero header or the end of the file
  // (or, with `last_wanted`, before reaching it): what and where.
  std::optional<std::string> problem;
  std::uint64_t problem_offset = 0;
  // The problem is one a torn write cannot cause (see RECOVERY).
  bool hard_problem = false;
};

// Scans `file`, the whole content of a segment. Stops after `last_wanted` when it is nonzero.
// Payloads larger than `payload_bytes_max` count as damage. Never reads outside `file`.
[[nodiscard]] SegmentScan scan_segment(std::span<const std::byte> file, Index last_wanted,
                                       std::uint32_t payload_bytes_max);

// Whether what ends the data of the newest open segment can be the torn batch in flight at a
// crash (RECOVERY). `offset` is where the data ends (the cut), `first_cut` the index a record
// there would have had, `why` what was found.
struct TailJudgement {
  bool torn = false;
  std::uint64_t offset = 0;
  Index first_cut;
  std::string why;
};
// For a scan with a valid header whose data ended at a problem or with nonzero bytes after it.
[[nodiscard]] TailJudgement judge_tail(std::span<const std::byte> file, const SegmentScan& scan,
                                       std::uint32_t payload_bytes_max);
// For a newest open segment with a zero header but data: `expected_first` is the index its
// first record must have (0 when unknown).
[[nodiscard]] TailJudgement judge_zero_header(std::span<const std::byte> file,
                                              std::uint32_t tear_window_bytes, Index expected_first,
                                              std::uint32_t payload_bytes_max);

// Checks one record at `offset` (header and payload) and returns its description, or nullopt.
// `expected_index` of zero accepts any index. `tear_like` is set when the failure is one a torn
// write can cause (CRC mismatch, cut off by the end of the file).
[[nodiscard]] std::optional<RecordInfo> check_record(std::span<const std::byte> file,
                                                     std::uint64_t offset, Index expected_index,
                                                     std::uint32_t payload_bytes_max,
                                                     std::string* why, bool* tear_like = nullptr);

}  // namespace coraft::storage
