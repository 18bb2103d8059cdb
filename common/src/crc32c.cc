#include "tokenmem/common/crc32c.h"

#include <array>
#include <cstring>

namespace tokenmem {
namespace {

constexpr uint32_t kPoly = 0x82F63B78u;  // reflected Castagnoli polynomial

constexpr std::array<uint32_t, 256> MakeTable() {
  std::array<uint32_t, 256> t{};
  for (uint32_t i = 0; i < 256; ++i) {
    uint32_t c = i;
    for (int k = 0; k < 8; ++k) c = (c & 1) ? (c >> 1) ^ kPoly : c >> 1;
    t[i] = c;
  }
  return t;
}
constexpr auto kTable = MakeTable();

uint32_t Crc32cTable(const unsigned char* p, size_t n, uint32_t crc) {
  for (size_t i = 0; i < n; ++i) crc = kTable[(crc ^ p[i]) & 0xFF] ^ (crc >> 8);
  return crc;
}

#if defined(__x86_64__)

// Polynomials over GF(2) modulo the CRC polynomial, in the CRC's reflected
// bit order: bit 31 is the coefficient of x^0, bit 0 that of x^31.
constexpr uint32_t kOne = 1u << 31;

constexpr uint32_t MulMod(uint32_t a, uint32_t b) {
  uint32_t product = 0;
  for (int i = 31; i >= 0; --i) {  // bit i of a is the coefficient of x^(31 - i)
    if (a & (1u << i)) product ^= b;
    b = (b & 1) ? (b >> 1) ^ kPoly : b >> 1;  // b *= x
  }
  return product;
}

// x^(8 * bytes): what running the raw CRC register over `bytes` zero bytes
// multiplies it by.
constexpr uint32_t ZerosOperator(uint64_t bytes) {
  uint32_t result = kOne;
  uint32_t square = 1u << 23;  // x^8
  for (; bytes != 0; bytes >>= 1) {
    if (bytes & 1) result = MulMod(result, square);
    square = MulMod(square, square);
  }
  return result;
}

// Advances a raw CRC register over a fixed number of zero bytes with four
// table lookups (the map is linear, so it is applied a byte at a time).
struct ShiftTable {
  std::array<std::array<uint32_t, 256>, 4> t{};
};

constexpr ShiftTable MakeShift(uint64_t bytes) {
  ShiftTable s;
  const uint32_t op = ZerosOperator(bytes);
  for (int k = 0; k < 4; ++k) {
    for (uint32_t v = 0; v < 256; ++v) s.t[k][v] = MulMod(v << (8 * k), op);
  }
  return s;
}

uint32_t Shift(const ShiftTable& s, uint32_t crc) {
  return s.t[0][crc & 0xFF] ^ s.t[1][(crc >> 8) & 0xFF] ^ s.t[2][(crc >> 16) & 0xFF] ^
         s.t[3][crc >> 24];
}

// The crc32 instruction takes 3 cycles but can start one per cycle, so
// three independent streams over three equal thirds of a stretch keep it
// busy; their registers are then joined: crc(A|B|C) =
// shift(shift(crc(A), |B|) ^ crc(B), |C|) ^ crc(C), the later streams
// starting from 0. Two stretch lengths keep the join cheap for long and
// short buffers alike.
constexpr size_t kLongStream = 8192;
constexpr size_t kShortStream = 256;
constexpr ShiftTable kLongShift = MakeShift(kLongStream);
constexpr ShiftTable kShortShift = MakeShift(kShortStream);

__attribute__((target("sse4.2"))) inline uint64_t Load64(const unsigned char* p) {
  uint64_t v;
  std::memcpy(&v, p, 8);
  return v;
}

template <size_t kStream>
__attribute__((target("sse4.2"))) inline uint32_t ThreeStreams(const unsigned char* p, uint32_t crc,
                                                               const ShiftTable& shift) {
  uint64_t a = crc, b = 0, c = 0;
  for (size_t i = 0; i < kStream; i += 8) {
    a = __builtin_ia32_crc32di(a, Load64(p + i));
    b = __builtin_ia32_crc32di(b, Load64(p + kStream + i));
    c = __builtin_ia32_crc32di(c, Load64(p + 2 * kStream + i));
  }
  const uint32_t ab = Shift(shift, static_cast<uint32_t>(a)) ^ static_cast<uint32_t>(b);
  return Shift(shift, ab) ^ static_cast<uint32_t>(c);
}

__attribute__((target("sse4.2"))) uint32_t Crc32cHw(const unsigned char* p, size_t n,
                                                    uint32_t crc) {
  while (n >= 3 * kLongStream) {
    crc = ThreeStreams<kLongStream>(p, crc, kLongShift);
    p += 3 * kLongStream;
    n -= 3 * kLongStream;
  }
  while (n >= 3 * kShortStream) {
    crc = ThreeStreams<kShortStream>(p, crc, kShortShift);
    p += 3 * kShortStream;
    n -= 3 * kShortStream;
  }
  uint64_t c = crc;
  while (n >= 8) {
    c = __builtin_ia32_crc32di(c, Load64(p));
    p += 8;
    n -= 8;
  }
  auto c32 = static_cast<uint32_t>(c);
  while (n > 0) {
    c32 = __builtin_ia32_crc32qi(c32, *p);
    ++p;
    --n;
  }
  return c32;
}
bool HaveSse42() {
  static const bool have = __builtin_cpu_supports("sse4.2");
  return have;
}
#endif

}  // namespace

uint32_t Crc32c(std::span<const std::byte> data, uint32_t crc) {
  const auto* p = reinterpret_cast<const unsigned char*>(data.data());
  uint32_t c = ~crc;
#if defined(__x86_64__)
  if (HaveSse42()) return ~Crc32cHw(p, data.size(), c);
#endif
  return ~Crc32cTable(p, data.size(), c);
}

}  // namespace tokenmem
