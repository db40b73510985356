// Payload guards, private side: the card-number finder shared with redaction
// and the single-pass JSON checker behind asyncmq::check_payload.
//
// Why a scanner and not a parse: Queue::add has parsed the payload once
// already and hands the codec serialised text. A second boost::json::parse
// would allocate a whole document per job only to walk it; the scanner walks
// the text once, allocates nothing unless it must decode a string with
// escapes (or build the path of a refusal), and so stays a small fraction of
// the cost of sealing. It accepts exactly JSON (RFC 8259) and refuses
// anything else as rule `json`; it never echoes text into its errors.
//
// Card numbers (PAN): a run of digit groups separated by one space or one
// dash ("4111 1111-1111 1111"). Any sequence of whole consecutive groups
// holding 13..19 digits, with an issuer prefix and length that payment
// cards use (Visa 4: 13/16/19; Mastercard 51-55, 2221-2720: 16+; Maestro
// 50, 56-58, 6: 16+; Amex 34/37: 15; Diners 30/36/38/39: 14+; JCB 35: 16+;
// Mir 2200-2204: 16+; so never a 13-digit millisecond timestamp), not glued to a letter or digit on either side (as
// a regex's \b: "card 4111..." and "pan=4111..." count, "x4111...y" does
// not) and passing the Luhn check is a card number. UUIDs (8-4-4-4-12 hex,
// e.g. job ids) are skipped whole: about one in ten thousand random ones
// would otherwise have all-digit groups that pass. A single
// group is only a candidate as a whole: a 25-digit id is not scanned for a
// Luhn-valid 16-digit window, which would flag one random id in ten.
//
// Thread safety: pure functions, safe concurrently.
#pragma once

#include <cstddef>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace asyncmq::security {

// True if `digits` (only '0'..'9') passes the Luhn check.
bool luhn_valid(std::string_view digits) noexcept;

// [begin, end) offsets of the card numbers in `text` (rules above), in order,
// not overlapping.
std::vector<std::pair<std::size_t, std::size_t>> find_card_numbers(std::string_view text);

// True if `text` holds at least one card number; allocates nothing.
bool contains_card_number(std::string_view text) noexcept;

// The text of a JSON string's contents (between the quotes, escapes kept),
// with its escapes decoded to UTF-8. Malformed escapes are copied as they
// are (the caller has validated the text); a lone surrogate becomes U+FFFD.
std::string decode_json_string(std::string_view raw);

}  // namespace asyncmq::security
