// coraft-inspect: reads a node's data directory without changing it.
//   coraft-inspect log DIR      lists the segments and their records (index, term, type, size)
//   coraft-inspect verify DIR   checks every record CRC, the hard state and the snapshots;
//                               exits 1 naming the file and offset of the first damage
#include <sys/stat.h>
#include <cstdio>
#include <cstring>
#include <string>

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
               "       coraft-inspect verify DIR   check CRCs, hard state and snapshots\n");
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

void print_damage(const LogDirScan& s, const std::string& dir) {
  if (s.torn) {
    std::printf("torn tail (cut off when the log opens): %s offset %llu\n",
                join_path(dir, s.torn->first).c_str(),
                static_cast<unsigned long long>(s.torn->second));
  }
  if (s.bad) {
    std::fprintf(stderr, "corrupt: %s offset %llu: %s\n", join_path(dir, s.bad->name).c_str(),
                 static_cast<unsigned long long>(s.bad->offset), s.bad->why.c_str());
  }
}

int list_log(const std::string& dir) {
  auto s = scan_log_dir(dir);
  if (!s) {
    std::fprintf(stderr, "coraft-inspect: %s\n", s.error().message().c_str());
    return 1;
  }
  for (const ScannedSegment& seg : s->segments) {
    std::printf("segment %s  entries %llu..%llu  (%zu records, %llu bytes)\n", seg.name.c_str(),
                static_cast<unsigned long long>(seg.first().value()),
                static_cast<unsigned long long>(seg.last().value()), seg.scan.records.size(),
                static_cast<unsigned long long>(seg.scan.end_offset));
    for (const RecordInfo& r : seg.scan.records) {
      std::printf("  index %llu  term %llu  %-6s  %u bytes  at %llu\n",
                  static_cast<unsigned long long>(r.index.value()),
                  static_cast<unsigned long long>(r.term.value()), type_name(r.type), r.length,
                  static_cast<unsigned long long>(r.offset));
    }
  }
  for (const std::string& u : s->unused) std::printf("segment %s  prepared, unused\n", u.c_str());
  print_damage(*s, dir);
  return s->bad ? 1 : 0;
}

int verify(const std::string& dir) {
  int rc = 0;
  auto s = scan_log_dir(dir);
  if (!s) {
    std::fprintf(stderr, "coraft-inspect: %s\n", s.error().message().c_str());
    return 1;
  }
  std::size_t records = 0;
  for (const ScannedSegment& seg : s->segments) records += seg.scan.records.size();
  std::printf("log: %zu segments, %zu records verified\n", s->segments.size(), records);
  print_damage(*s, dir);
  if (s->bad) rc = 1;
  struct stat st {};
  if (::stat(join_path(dir, "hardstate").c_str(), &st) == 0) {
    auto hs = HardStateFile::open_read_only(dir);
    if (!hs) {
      std::fprintf(stderr, "corrupt: %s\n", hs.error().detail.c_str());
      rc = 1;
    } else {
      std::printf("hard state: term %llu, voted for %llu\n",
                  static_cast<unsigned long long>(hs->current().term.value()),
                  static_cast<unsigned long long>(hs->current().voted_for.value()));
      if (hs->damaged_slot()) {
        std::printf("hard state: damaged slot at %s offset %llu ignored\n", hs->path().c_str(),
                    static_cast<unsigned long long>(*hs->damaged_slot()));
      }
    }
  }
  if (::stat(join_path(dir, "snapshots").c_str(), &st) == 0) {
    SnapshotStore store = SnapshotStore::open_read_only(dir);
    auto all = store.list();
    if (!all) {
      std::fprintf(stderr, "coraft-inspect: %s\n", all.error().message().c_str());
      return 1;
    }
    for (const SnapshotInfo& info : *all) {
      auto snap = SnapshotStore::load(info.path, snapshot_verify_bytes_max);
      if (!snap) {
        std::fprintf(stderr, "corrupt: %s\n", snap.error().detail.c_str());
        rc = 1;
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
  struct stat st {};
  if (::stat(dir.c_str(), &st) != 0 || !S_ISDIR(st.st_mode)) {
    std::fprintf(stderr, "coraft-inspect: %s is not a directory\n", dir.c_str());
    return 2;
  }
  if (cmd == "log") return list_log(dir);
  if (cmd == "verify") return verify(dir);
  std::fprintf(stderr, "coraft-inspect: unknown command '%s'\n", cmd.c_str());
  return usage(stderr);
}
