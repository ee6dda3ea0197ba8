#include "storage/hard_state.hpp"

#include <fcntl.h>
#include <unistd.h>

#include <array>
#include <cerrno>
#include <cstring>

#include <coraft/log.hpp>

#include "storage/crc32c.hpp"

namespace coraft::storage {
namespace {

constexpr char magic[8] = {'c', 'o', 'r', 'a', 'f', 't', 'H', 'S'};
constexpr std::size_t slot_used_bytes = 64;

using SlotBytes = std::array<std::byte, HardStateFile::slot_bytes>;

void put64(std::byte* p, std::uint64_t v) {
  for (int i = 0; i < 8; ++i) p[i] = static_cast<std::byte>(v >> (8 * i));
}
std::uint64_t get64(const std::byte* p) {
  std::uint64_t v = 0;
  for (int i = 7; i >= 0; --i) v = (v << 8) | static_cast<std::uint8_t>(p[i]);
  return v;
}

std::uint32_t slot_crc(const std::byte* slot) {
  std::byte copy[slot_used_bytes];
  std::memcpy(copy, slot, slot_used_bytes);
  std::memset(copy + 32, 0, 4);
  return crc32c(copy);
}

struct Decoded {
  std::uint64_t version;
  HardState hs;
};

std::optional<Decoded> decode(const std::byte* slot) {
  if (std::memcmp(slot, magic, 8) != 0) return std::nullopt;
  std::uint32_t crc = 0;
  for (int i = 3; i >= 0; --i) crc = (crc << 8) | static_cast<std::uint8_t>(slot[32 + i]);
  if (crc != slot_crc(slot)) return std::nullopt;
  for (std::size_t i = 36; i < HardStateFile::slot_bytes; ++i) {
    if (slot[i] != std::byte{0}) return std::nullopt;
  }
  return Decoded{get64(slot + 8), {Term(get64(slot + 16)), NodeId(get64(slot + 24))}};
}

bool all_zero(const SlotBytes& s) {
  for (std::byte b : s) {
    if (b != std::byte{0}) return false;
  }
  return true;
}

// Creates an all-zero hard-state file durably: written under a temporary name, synced, renamed.
Result<Fd> create(const std::string& dir, const std::string& path) {
  std::string tmp = path + ".tmp";
  auto fd = open_file(tmp, O_RDWR | O_CREAT | O_TRUNC);
  if (!fd) return fd.error();
  SlotBytes zero{};
  for (std::uint64_t k = 0; k < 2; ++k) {
    if (auto r = pwrite_all(fd->get(), zero, k * HardStateFile::slot_bytes, tmp); !r) return r.error();
  }
  if (auto r = sync_file(fd->get(), tmp); !r) return r.error();
  if (auto r = rename_file(tmp, path); !r) return r.error();
  if (auto r = fsync_dir(dir); !r) return r.error();
  return fd;
}

}  // namespace

Result<HardStateFile> HardStateFile::open(const std::string& dir, bool read_only) {
  HardStateFile f;
  f.path_ = join_path(dir, "hardstate");
  bool missing = ::access(f.path_.c_str(), F_OK) != 0 && errno == ENOENT;
  if (missing && read_only) return Error(Errc::storage_io, f.path_ + " does not exist");
  if (missing) {
    auto created = create(dir, f.path_);
    if (!created) return created.error();
    f.fd_ = std::move(*created);
  } else {
    auto opened = open_file(f.path_, read_only ? O_RDONLY : O_RDWR);
    if (!opened) return opened.error();
    f.fd_ = std::move(*opened);
  }
  std::array<SlotBytes, 2> slots{};
  std::array<std::optional<Decoded>, 2> dec;
  for (std::uint64_t k = 0; k < 2; ++k) {
    if (auto r = pread_all(f.fd_.get(), slots[k], k * slot_bytes, f.path_); !r) return r.error();
    dec[k] = decode(slots[k].data());
  }
  if (!dec[0] && !dec[1]) {
    if (all_zero(slots[0]) && all_zero(slots[1])) return f;
    std::uint64_t off = all_zero(slots[0]) ? slot_bytes : 0;
    return Error(Errc::storage_corrupt, f.path_ + " offset " + std::to_string(off) +
                                            ": no hard-state slot passes its CRC");
  }
  std::uint64_t k = (dec[0] && (!dec[1] || dec[0]->version > dec[1]->version)) ? 0 : 1;
  f.slot_ = k;
  f.version_ = dec[k]->version;
  f.current_ = dec[k]->hs;
  if (!dec[1 - k] && !all_zero(slots[1 - k])) {
    f.damaged_ = (1 - k) * slot_bytes;
    log(LogLevel::warn, "storage: ", f.path_, " offset ", *f.damaged_,
        ": damaged hard-state slot ignored; the other slot holds version ", f.version_);
  }
  return f;
}

Result<void> HardStateFile::save(const HardState& hs) {
  SlotBytes slot{};
  std::memcpy(slot.data(), magic, 8);
  put64(slot.data() + 8, version_ + 1);
  put64(slot.data() + 16, hs.term.value());
  put64(slot.data() + 24, hs.voted_for.value());
  std::uint32_t crc = slot_crc(slot.data());
  for (int i = 0; i < 4; ++i) slot[32 + i] = static_cast<std::byte>(crc >> (8 * i));
  std::uint64_t target = 1 - slot_;
  if (auto r = pwrite_all(fd_.get(), slot, target * slot_bytes, path_); !r) return r;
  if (::fdatasync(fd_.get()) < 0) return errno_error(errno, "fdatasync " + path_);
  slot_ = target;
  ++version_;
  current_ = hs;
  damaged_.reset();
  return {};
}

}  // namespace coraft::storage
