// coraft-inspect: reads a node's data directory without changing it.
// DIR is a log directory, or a node's data directory (its log is in DIR/log, its snapshots in
// DIR/snapshots).
//   coraft-inspect log DIR      lists the segments and their records (index, term, type, size,
//                               offset and the payload's CRC-32C)
//   coraft-inspect verify DIR   checks every record CRC, the hard state and the snapshots;
//                               exits 1 naming the file and offset of the first damage, or
//                               of a torn tail the log's open would cut (saying what)
// Exit codes: 0 healthy, 1 damage found, 2 bad arguments or a missing directory, 3 the files
// could not be read (an I/O error, not a finding about the data).
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>
#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <string>
#include <vector>

#include "storage/crc32c.hpp"
#include "storage/file_util.hpp"
#include "storage/hard_state.hpp"
#include "storage/log_scan.hpp"
#include "storage/snapshot_store.hpp"

using namespace coraft;
using namespace coraft::storage;

namespace {

constexpr std::uint64_t snapshot_verify_bytes_max = 1ull << 40;

int usage(FILE* out) {
  std::fprintf(out,
               "usage: coraft-inspect log DIR      list segments and records\n"
               "       coraft-inspect verify DIR   check CRCs, hard state and snapshots\n"
               "DIR: a log directory, or a node's data directory (its log in DIR/log)\n");
  return out == stderr ? 2 : 0;
}

const char* type_name(EntryType t) {
  switch (t) {
    case EntryType::normal: return "normal";
    case EntryType::noop: return "noop";
    case EntryType::config: return "config";
  }
  return "?";
}

constexpr int exit_damage = 1;
constexpr int exit_usage = 2;
constexpr int exit_io = 3;

// A failure to read: corruption findings exit 1, anything else (I/O, permissions) exit 3.
int report_error(const Error& e) {
  bool corrupt = e.is(Errc::storage_corrupt);
  std::fprintf(stderr, "%s: %s\n", corrupt ? "corrupt" : "coraft-inspect: cannot read",
               corrupt ? e.detail.c_str() : e.message().c_str());
  return corrupt ? exit_damage : exit_io;
}

void print_damage(const LogDirScan& s, const std::string& dir) {
  if (s.torn) {
    std::printf(
        "torn tail: %s offset %llu%s: the batch in flight at a crash, never acknowledged; "
        "opening the log cuts it (entries from index %llu on)\n",
        join_path(dir, s.torn->first).c_str(), static_cast<unsigned long long>(s.torn->second),
        s.torn_header ? " (zero header: the whole file)" : "",
        static_cast<unsigned long long>(s.torn_first.value()));
  }
  if (s.bad) {
    std::fprintf(stderr, "corrupt: %s offset %llu: %s\n", join_path(dir, s.bad->name).c_str(),
                 static_cast<unsigned long long>(s.bad->offset), s.bad->why.c_str());
  }
}

int list_log(const std::string& dir) {
  auto s = scan_log_dir(dir);
  if (!s) return report_error(s.error());
  if (s->segments.empty() && s->unused.empty() && !s->torn && !s->bad) {
    std::printf("no log segments in %s\n", dir.c_str());
    return 0;
  }
  for (const ScannedSegment& seg : s->segments) {
    std::printf("segment %s  entries %llu..%llu  (%zu records, %llu bytes)\n", seg.name.c_str(),
                static_cast<unsigned long long>(seg.first().value()),
                static_cast<unsigned long long>(seg.last().value()), seg.scan.records.size(),
                static_cast<unsigned long long>(seg.scan.end_offset));
    // Each payload's CRC-32C, so that two servers' logs can be compared entry by entry (the
    // record's own checksum also covers its place in a write batch, which differs per server).
    const int fd = ::open(join_path(dir, seg.name).c_str(), O_RDONLY | O_CLOEXEC);
    std::vector<std::byte> payload;
    for (const RecordInfo& r : seg.scan.records) {
      payload.resize(r.length);
      const bool read = fd >= 0 && ::pread(fd, payload.data(), r.length,
                                           static_cast<off_t>(r.offset + record_header_bytes)) ==
                                       static_cast<ssize_t>(r.length);
      char crc[16] = "?";
      if (read) std::snprintf(crc, sizeof crc, "%08x", crc32c(payload));
      std::printf("  index %llu  term %llu  %-6s  %u bytes  at %llu  payload crc %s\n",
                  static_cast<unsigned long long>(r.index.value()),
                  static_cast<unsigned long long>(r.term.value()), type_name(r.type), r.length,
                  static_cast<unsigned long long>(r.offset), crc);
    }
    if (fd >= 0) ::close(fd);
  }
  for (const std::string& u : s->unused) std::printf("segment %s  prepared, unused\n", u.c_str());
  print_damage(*s, dir);
  return s->bad || s->torn ? exit_damage : 0;
}

int verify(const std::string& dir, const std::string& snapshots_dir) {
  int rc = 0;
  auto s = scan_log_dir(dir);
  if (!s) return report_error(s.error());
  std::size_t records = 0;
  for (const ScannedSegment& seg : s->segments) records += seg.scan.records.size();
  std::printf("log: %zu segments, %zu records verified\n", s->segments.size(), records);
  print_damage(*s, dir);
  if (s->bad || s->torn) rc = exit_damage;
  struct stat st {};
  if (::stat(join_path(dir, "hardstate").c_str(), &st) == 0) {
    auto hs = HardStateFile::open_read_only(dir);
    if (!hs) {
      rc = std::max(rc, report_error(hs.error()));
    } else {
      std::printf("hard state: term %llu, voted for %llu\n",
                  static_cast<unsigned long long>(hs->current().term.value()),
                  static_cast<unsigned long long>(hs->current().vote.value()));
      if (hs->damaged_slot()) {
        std::printf(
            "hard state: damaged slot at %s offset %llu ignored: a torn save or corruption; "
            "the state above may be older than the last one saved\n",
            hs->path().c_str(), static_cast<unsigned long long>(*hs->damaged_slot()));
        rc = std::max(rc, exit_damage);
      }
    }
  }
  if (::stat(join_path(snapshots_dir, "snapshots").c_str(), &st) == 0) {
    SnapshotStore store = SnapshotStore::open_read_only(snapshots_dir);
    auto all = store.list();
    if (!all) return std::max(rc, report_error(all.error()));
    for (const SnapshotInfo& info : *all) {
      auto snap = SnapshotStore::load(info.path, snapshot_verify_bytes_max);
      if (!snap) {
        rc = std::max(rc, report_error(snap.error()));
        continue;
      }
      std::printf("snapshot %s: index %llu, term %llu, %zu bytes\n", info.path.c_str(),
                  static_cast<unsigned long long>(snap->meta.last_index.value()),
                  static_cast<unsigned long long>(snap->meta.last_term.value()), snap->data.size());
    }
  }
  std::printf("%s\n", rc == 0 ? "ok" : "damage found");
  return rc;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc == 2 && (!std::strcmp(argv[1], "--help") || !std::strcmp(argv[1], "-h")))
    return usage(stdout);
  if (argc != 3) return usage(stderr);
  std::string cmd = argv[1];
  std::string dir = argv[2];
  if (cmd != "log" && cmd != "verify") {
    std::fprintf(stderr, "coraft-inspect: unknown command '%s'\n", cmd.c_str());
    return usage(stderr);
  }
  struct stat st {};
  if (::stat(dir.c_str(), &st) != 0) {
    int err = errno;
    if (err == ENOENT) {
      std::fprintf(stderr, "coraft-inspect: %s does not exist\n", dir.c_str());
      return exit_usage;
    }
    std::fprintf(stderr, "coraft-inspect: cannot read %s: %s\n", dir.c_str(), std::strerror(err));
    return exit_io;
  }
  if (!S_ISDIR(st.st_mode)) {
    std::fprintf(stderr, "coraft-inspect: %s is not a directory\n", dir.c_str());
    return exit_usage;
  }
  // A node's data directory keeps its log one level down.
  std::string log_dir = dir;
  if (::stat(join_path(dir, "log").c_str(), &st) == 0 && S_ISDIR(st.st_mode))
    log_dir = join_path(dir, "log");
  return cmd == "log" ? list_log(log_dir) : verify(log_dir, dir);
}
