#include <coraft/membership.hpp>

#include <algorithm>
#include <cstring>

namespace coraft {
namespace {

bool sorted_contains(const std::vector<NodeId>& v, NodeId id) {
  return std::binary_search(v.begin(), v.end(), id);
}

void normalise(std::vector<NodeId>& v) {
  std::sort(v.begin(), v.end());
  v.erase(std::unique(v.begin(), v.end()), v.end());
}

// Encoding: u8 version, then three lists (voters, outgoing voters, learners), each a u32 count
// followed by u64 ids, all little-endian. Version 2 follows them with the addresses: a u32
// count, then for each a u64 id, a u32 length and that many bytes of text. A configuration
// without addresses is written as version 1.
constexpr std::uint8_t format_version = 1;
constexpr std::uint8_t format_version_addresses = 2;
constexpr std::uint32_t ids_max = 1u << 16;
constexpr std::uint32_t address_bytes_max = 1024;

void put_u32(std::vector<std::byte>& out, std::uint32_t v) {
  for (int i = 0; i < 4; ++i) out.push_back(static_cast<std::byte>(v >> (8 * i)));
}
void put_u64(std::vector<std::byte>& out, std::uint64_t v) {
  for (int i = 0; i < 8; ++i) out.push_back(static_cast<std::byte>(v >> (8 * i)));
}

class Reader {
 public:
  explicit Reader(std::span<const std::byte> d) : d_(d) {}
  bool u8(std::uint8_t& v) {
    if (d_.size() < 1) return false;
    v = static_cast<std::uint8_t>(d_[0]);
    d_ = d_.subspan(1);
    return true;
  }
  bool u32(std::uint32_t& v) { return fixed(v, 4); }
  bool u64(std::uint64_t& v) { return fixed(v, 8); }
  [[nodiscard]] std::size_t left() const { return d_.size(); }

 private:
  template <class T>
  bool fixed(T& v, std::size_t n) {
    if (d_.size() < n) return false;
    v = 0;
    for (std::size_t i = 0; i < n; ++i) v |= static_cast<T>(static_cast<T>(d_[i]) << (8 * i));
    d_ = d_.subspan(n);
    return true;
  }
  std::span<const std::byte> d_;
};

}  // namespace

bool Configuration::is_voter(NodeId id) const noexcept {
  return sorted_contains(voters, id) || sorted_contains(outgoing_voters, id);
}

bool Configuration::is_learner(NodeId id) const noexcept {
  return sorted_contains(learners, id);
}

std::vector<NodeId> Configuration::members() const {
  std::vector<NodeId> all = voters;
  all.insert(all.end(), outgoing_voters.begin(), outgoing_voters.end());
  all.insert(all.end(), learners.begin(), learners.end());
  normalise(all);
  return all;
}

Result<Configuration> Configuration::make(std::vector<NodeId> voters,
                                          std::vector<NodeId> outgoing_voters,
                                          std::vector<NodeId> learners) {
  Configuration c{std::move(voters), std::move(outgoing_voters), std::move(learners), {}};
  normalise(c.voters);
  normalise(c.outgoing_voters);
  normalise(c.learners);
  for (const auto* list : {&c.voters, &c.outgoing_voters, &c.learners}) {
    if (sorted_contains(*list, no_node)) {
      return Error(Errc::invalid_argument, "configuration names node 0");
    }
  }
  for (NodeId l : c.learners) {
    if (sorted_contains(c.voters, l) || sorted_contains(c.outgoing_voters, l)) {
      return Error(Errc::invalid_argument,
                   detail::concat("node ", l, " is both a voter and a learner"));
    }
  }
  return c;
}

void Configuration::set_addresses(const std::vector<MemberAddress>& from) {
  addresses.clear();
  for (auto it = from.rbegin(); it != from.rend(); ++it) {
    if (!contains(it->id)) continue;
    if (std::any_of(addresses.begin(), addresses.end(),
                    [&](const MemberAddress& a) { return a.id == it->id; })) {
      continue;
    }
    addresses.push_back(*it);
  }
  std::sort(addresses.begin(), addresses.end(),
            [](const MemberAddress& a, const MemberAddress& b) { return a.id < b.id; });
}

Bytes encode_configuration(const Configuration& c) {
  std::vector<std::byte> out;
  out.reserve(1 + 12 + 8 * (c.voters.size() + c.outgoing_voters.size() + c.learners.size()));
  out.push_back(
      static_cast<std::byte>(c.addresses.empty() ? format_version : format_version_addresses));
  for (const auto* list : {&c.voters, &c.outgoing_voters, &c.learners}) {
    put_u32(out, static_cast<std::uint32_t>(list->size()));
    for (NodeId id : *list) put_u64(out, id.value());
  }
  if (!c.addresses.empty()) {
    put_u32(out, static_cast<std::uint32_t>(c.addresses.size()));
    for (const MemberAddress& a : c.addresses) {
      put_u64(out, a.id.value());
      put_u32(out, static_cast<std::uint32_t>(a.address.size()));
      for (char ch : a.address) out.push_back(static_cast<std::byte>(ch));
    }
  }
  return Bytes::adopt(std::move(out));
}

Result<Configuration> decode_configuration(std::span<const std::byte> data) {
  Reader r(data);
  std::uint8_t version = 0;
  if (!r.u8(version) || (version != format_version && version != format_version_addresses)) {
    return Error(Errc::protocol_error, "configuration: unknown format version");
  }
  std::vector<NodeId> lists[3];
  for (auto& list : lists) {
    std::uint32_t n = 0;
    if (!r.u32(n) || n > ids_max || r.left() < std::size_t{n} * 8) {
      return Error(Errc::protocol_error, "configuration: truncated or oversized id list");
    }
    list.reserve(n);
    for (std::uint32_t i = 0; i < n; ++i) {
      std::uint64_t id = 0;
      r.u64(id);
      list.emplace_back(id);
    }
  }
  std::vector<MemberAddress> addresses;
  if (version == format_version_addresses) {
    std::uint32_t n = 0;
    if (!r.u32(n) || n == 0 || n > ids_max) {
      return Error(Errc::protocol_error, "configuration: bad address count");
    }
    for (std::uint32_t i = 0; i < n; ++i) {
      std::uint64_t id = 0;
      std::uint32_t len = 0;
      if (!r.u64(id) || !r.u32(len) || len > address_bytes_max || r.left() < len) {
        return Error(Errc::protocol_error, "configuration: truncated or oversized address");
      }
      std::string text(len, '\0');
      for (std::uint32_t k = 0; k < len; ++k) {
        std::uint8_t ch = 0;
        r.u8(ch);
        text[k] = static_cast<char>(ch);
      }
      if (!addresses.empty() && addresses.back().id.value() >= id) {
        return Error(Errc::protocol_error, "configuration: addresses not sorted by id");
      }
      addresses.push_back(MemberAddress{NodeId(id), std::move(text)});
    }
  }
  if (r.left() != 0) return Error(Errc::protocol_error, "configuration: trailing bytes");
  auto c = Configuration::make(std::move(lists[0]), std::move(lists[1]), std::move(lists[2]));
  if (!c) return Error(Errc::protocol_error, "configuration: " + c.error().detail);
  for (const MemberAddress& a : addresses) {
    if (!c->contains(a.id)) {
      return Error(Errc::protocol_error, "configuration: an address names a non-member");
    }
  }
  c->addresses = std::move(addresses);
  return c;
}

}  // namespace coraft
