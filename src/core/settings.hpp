// Settings, private side: value kinds and the text conversions shared by
// variables and flags (the public side is include/asyncmq/settings.hpp).
#pragma once

#include <asyncmq/settings.hpp>

#include <cstdint>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

namespace asyncmq::core {

enum class SettingKind { text, list, count, flag };

using SettingValue = std::variant<std::string, std::vector<std::string>, std::uint64_t, bool>;

// A variable's or flag's text as a value of `kind`: lists are
// comma-separated (items trimmed, empty ones dropped), counts decimal,
// flags true/false/1/0/yes/no/on/off. Throws InvalidArgument
// (errc::invalid_config) naming `name`, never the text.
SettingValue parse_setting_text(SettingKind kind, std::string_view text, const std::string& name);

// A value as `config show` prints it (lists joined by ", ").
std::string setting_text(const SettingValue& v);

}  // namespace asyncmq::core
