#include <asyncmq/codec.hpp>

namespace asyncmq {
namespace {

class PlainCodec final : public Codec {
 public:
  std::string encode(const CodecContext&, std::string_view plain) override {
    return std::string(plain);
  }
  std::string decode(const CodecContext&, std::string_view stored) override {
    return std::string(stored);
  }
};

}  // namespace

std::shared_ptr<Codec> make_plain_codec() { return std::make_shared<PlainCodec>(); }

}  // namespace asyncmq
