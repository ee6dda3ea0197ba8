// The receiving half of the codec: one complete, word-aligned frame into a FrameBody.
#include <algorithm>
#include <string>

#include <capnp/message.h>
#include <capnp/serialize.h>
#include <kj/exception.h>

#include <coraft/text.hpp>

#include "net/codec.hpp"
#include "schema/raft.capnp.h"

namespace coraft::net {
namespace {

constexpr std::size_t word_bytes = 8;

Error malformed(std::string what) {
  return Error(Errc::protocol_error, std::move(what));
}

class Reader {
 public:
  Reader(const Bytes& frame, const CodecLimits& limits) : frame_(frame), limits_(limits) {}

  Result<FrameBody> read(wire::Frame::Reader f) {
    switch (f.which()) {
      case wire::Frame::HANDSHAKE: return FrameBody(handshake(f.getHandshake()));
      case wire::Frame::HANDSHAKE_REPLY: return FrameBody(reply(f.getHandshakeReply()));
      case wire::Frame::VOTE_REQUEST: return message(vote_request(f.getVoteRequest()));
      case wire::Frame::VOTE_RESPONSE: return message(vote_response(f.getVoteResponse()));
      case wire::Frame::APPEND_REQUEST: return append_request(f.getAppendRequest());
      case wire::Frame::APPEND_RESPONSE: return message(append_response(f.getAppendResponse()));
      case wire::Frame::HEARTBEAT_REQUEST: {
        auto w = f.getHeartbeatRequest();
        return message(core::HeartbeatRequest{Term(w.getTerm()), Index(w.getLeaderCommit()),
                                              w.getReadContext()});
      }
      case wire::Frame::HEARTBEAT_RESPONSE: {
        auto w = f.getHeartbeatResponse();
        return message(core::HeartbeatResponse{Term(w.getTerm()), w.getReadContext()});
      }
      case wire::Frame::INSTALL_SNAPSHOT: return install_snapshot(f.getInstallSnapshot());
      case wire::Frame::INSTALL_SNAPSHOT_RESPONSE: {
        auto w = f.getInstallSnapshotResponse();
        return message(core::InstallSnapshotResponse{Term(w.getTerm()), Index(w.getLastIndex()),
                                                     w.getNextOffset(), w.getSuccess(), w.getDone(),
                                                     w.getStream()});
      }
      case wire::Frame::TIMEOUT_NOW:
        return message(core::TimeoutNow{Term(f.getTimeoutNow().getTerm())});
      case wire::Frame::KEEPALIVE: return FrameBody(Keepalive{});
      case wire::Frame::READ_INDEX_REQUEST: {
        auto w = f.getReadIndexRequest();
        return message(core::ReadIndexRequest{Term(w.getTerm()), w.getContext()});
      }
      case wire::Frame::READ_INDEX_RESPONSE: {
        auto w = f.getReadIndexResponse();
        return message(core::ReadIndexResponse{Term(w.getTerm()), w.getContext(),
                                               Index(w.getReadIndex()), w.getSuccess()});
      }
    }
    return malformed(detail::concat("unknown frame kind ", static_cast<unsigned>(f.which())));
  }

 private:
  static Result<FrameBody> message(core::MessageBody body) { return FrameBody(std::move(body)); }

  static Handshake handshake(wire::Handshake::Reader w) {
    return {w.getProtocolVersion(), w.getClusterId(), NodeId(w.getSenderId()),
            NodeId(w.getReceiverId()), w.getGroupId()};
  }
  static HandshakeReply reply(wire::HandshakeReply::Reader w) {
    auto reason = w.getReason();
    return {w.getAccepted(),
            w.getProtocolVersion(),
            w.getClusterId(),
            NodeId(w.getNodeId()),
            std::string(reason.begin(), reason.size()),
            w.getGroupId()};
  }
  static core::VoteRequest vote_request(wire::VoteRequest::Reader w) {
    return {Term(w.getTerm()), Index(w.getLastLogIndex()), Term(w.getLastLogTerm()), w.getPreVote(),
            w.getLeadershipTransfer()};
  }
  static core::VoteResponse vote_response(wire::VoteResponse::Reader w) {
    return {Term(w.getTerm()), w.getGranted(), w.getPreVote()};
  }
  static core::AppendResponse append_response(wire::AppendResponse::Reader w) {
    return {Term(w.getTerm()),         w.getSuccess(),
            Index(w.getMatchIndex()),  Index(w.getLastLogIndex()),
            Term(w.getConflictTerm()), Index(w.getConflictIndex())};
  }

  // A view of `data` sharing the frame's buffer: the payload is not copied.
  Bytes view(capnp::Data::Reader data) const {
    if (data.size() == 0) return {};
    auto offset =
        static_cast<std::size_t>(reinterpret_cast<const std::byte*>(data.begin()) - frame_.data());
    return frame_.slice(offset, data.size());
  }

  Result<FrameBody> append_request(wire::AppendRequest::Reader w) {
    core::AppendRequest m{Term(w.getTerm()),
                          Index(w.getPrevLogIndex()),
                          Term(w.getPrevLogTerm()),
                          Index(w.getLeaderCommit()),
                          {}};
    auto list = w.getEntries();
    if (list.size() > limits_.entries_per_frame_max) {
      return malformed(detail::concat("appendRequest carries ", list.size(),
                                      " entries, above entries_per_frame_max ",
                                      limits_.entries_per_frame_max));
    }
    m.entries.reserve(list.size());
    Index expected = m.prev_log_index + 1;
    for (auto we : list) {
      auto type = static_cast<std::uint16_t>(we.getType());
      if (type > static_cast<std::uint16_t>(EntryType::config)) {
        return malformed(detail::concat("entry ", we.getIndex(), " has unknown type ", type));
      }
      if (we.getIndex() != expected.value() || we.getTerm() == 0) {
        return malformed(detail::concat("entry index ", we.getIndex(), " term ", we.getTerm(),
                                        " where index ", expected, " with a term >= 1 belongs"));
      }
      m.entries.push_back(
          Entry{expected, Term(we.getTerm()), static_cast<EntryType>(type), view(we.getPayload())});
      ++expected;
    }
    return message(std::move(m));
  }

  Result<std::vector<NodeId>> ids(capnp::List<std::uint64_t>::Reader list) const {
    if (list.size() > limits_.configuration_ids_max) {
      return malformed(detail::concat("configuration list of ", list.size(),
                                      " ids exceeds configuration_ids_max ",
                                      limits_.configuration_ids_max));
    }
    std::vector<NodeId> out;
    out.reserve(list.size());
    for (auto id : list) out.emplace_back(id);
    return out;
  }

  Result<FrameBody> install_snapshot(wire::InstallSnapshot::Reader w) {
    auto meta = w.getMeta();
    auto conf = meta.getConfiguration();
    auto voters = ids(conf.getVoters());
    auto outgoing = ids(conf.getOutgoingVoters());
    auto learners = ids(conf.getLearners());
    if (!voters) return voters.error();
    if (!outgoing) return outgoing.error();
    if (!learners) return learners.error();
    auto config =
        Configuration::make(std::move(*voters), std::move(*outgoing), std::move(*learners));
    if (!config) {
      return malformed("installSnapshot carries an invalid configuration: " +
                       config.error().message());
    }
    core::InstallSnapshot m{
        Term(w.getTerm()),
        SnapshotMeta{Index(meta.getLastIndex()), Term(meta.getLastTerm()), std::move(*config)},
        w.getOffset(),
        view(w.getData()),
        w.getDone(),
        w.getStream(),
        w.getSync()};
    return message(std::move(m));
  }

  const Bytes& frame_;
  const CodecLimits& limits_;
};

}  // namespace

Result<FrameBody> decode(const Bytes& frame, const CodecLimits& limits) {
  CORAFT_REQUIRE(reinterpret_cast<std::uintptr_t>(frame.data()) % word_bytes == 0 &&
                     frame.size() % word_bytes == 0,
                 "frames are decoded from whole, word-aligned buffers", frame.size());
  if (frame.size() > limits.frame_bytes_max) {
    return malformed(detail::concat("frame of ", frame.size(), " bytes exceeds frame_bytes_max ",
                                    limits.frame_bytes_max));
  }
  std::size_t words = frame.size() / word_bytes;
  capnp::ReaderOptions options;
  // A well-formed frame traverses each of its words at most once.
  options.traversalLimitInWords = std::min<std::uint64_t>(limits.traversal_words_max, words);
  options.nestingLimit = limits.nesting_max;
  try {
    kj::ArrayPtr<const capnp::word> array(reinterpret_cast<const capnp::word*>(frame.data()),
                                          words);
    capnp::FlatArrayMessageReader message(array, options);
    if (message.getEnd() != array.end()) {
      return malformed(detail::concat("frame has ", (array.end() - message.getEnd()) * 8,
                                      " bytes after its last segment"));
    }
    Reader reader(frame, limits);
    return reader.read(message.getRoot<wire::Frame>());
  } catch (const kj::Exception& e) {
    return malformed("malformed frame: " + std::string(e.getDescription().cStr()));
  }
}

}  // namespace coraft::net
