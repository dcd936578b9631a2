// JPEG decoding with the system's libjpeg-turbo (libjpeg.so.62, loaded at
// run time when present): the same decoder, settings and pixels as the
// libjpeg-turbo inside sharp and Pillow (islow IDCT, fancy upsampling), at a
// fraction of the per-image cost of a libvips pipeline on small images.
// Only the common case is taken: 8-bit, 3-component (YCbCr or RGB) images
// without EXIF rotation or an ICC profile, decoded without a warning.
// Everything else reports kDeclined and the caller decodes it as before.
#pragma once
#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

namespace vl {
namespace cpu {

enum class JpegResult {
  kDecoded,
  kDeclined,     // not the common case (see above), or corrupt: decode it another way
  kUnavailable,  // no libjpeg.so.62 on this machine (or built without jpeglib.h)
};

struct JpegPixels {
  int width = 0, height = 0;
  std::vector<uint8_t> rgb;  // height x width x 3
  std::string reason;        // why it was declined
};

// Whether libjpeg-turbo could be loaded; "" or the library's name in `name`.
bool jpeg_available(std::string* name = nullptr);

// At most max_pixels pixels are decoded (larger images are declined).
JpegResult decode_jpeg_rgb(const uint8_t* data, size_t size, int64_t max_pixels, JpegPixels* out);

}  // namespace cpu
}  // namespace vl
