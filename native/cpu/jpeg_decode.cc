#include "cpu/jpeg_decode.h"

#include <csetjmp>
#include <cstdio>
#include <cstring>

#include <dlfcn.h>

#if __has_include(<jpeglib.h>)
#include <jpeglib.h>
#define VL_HAVE_JPEGLIB 1
#endif

namespace vl {
namespace cpu {

#ifdef VL_HAVE_JPEGLIB
namespace {

// The libjpeg entry points, from the shared library (never linked: the addon
// must load where there is none).
struct JpegLib {
  const char* name = nullptr;
  jpeg_error_mgr* (*std_error)(jpeg_error_mgr*) = nullptr;
  void (*create_decompress)(j_decompress_ptr, int, size_t) = nullptr;
  void (*mem_src)(j_decompress_ptr, const unsigned char*, unsigned long) = nullptr;
  void (*save_markers)(j_decompress_ptr, int, unsigned int) = nullptr;
  int (*read_header)(j_decompress_ptr, boolean) = nullptr;
  boolean (*start_decompress)(j_decompress_ptr) = nullptr;
  JDIMENSION (*read_scanlines)(j_decompress_ptr, JSAMPARRAY, JDIMENSION) = nullptr;
  boolean (*finish_decompress)(j_decompress_ptr) = nullptr;
  void (*destroy_decompress)(j_decompress_ptr) = nullptr;
};

template <typename F>
bool resolve(void* handle, const char* symbol, F* fn) {
  *fn = reinterpret_cast<F>(dlsym(handle, symbol));
  return *fn != nullptr;
}

const JpegLib* jpeg_lib() {
  static const JpegLib* lib = []() -> const JpegLib* {
    // The ABI jpeglib.h describes (JPEG_LIB_VERSION 62): libjpeg-turbo's libjpeg.so.62.
    if (JPEG_LIB_VERSION != 62) return nullptr;
    void* h = dlopen("libjpeg.so.62", RTLD_NOW | RTLD_LOCAL);
    if (!h) return nullptr;
    static JpegLib l;
    l.name = "libjpeg.so.62";
    const bool ok = resolve(h, "jpeg_std_error", &l.std_error) && resolve(h, "jpeg_CreateDecompress", &l.create_decompress) &&
                    resolve(h, "jpeg_mem_src", &l.mem_src) && resolve(h, "jpeg_save_markers", &l.save_markers) &&
                    resolve(h, "jpeg_read_header", &l.read_header) &&
                    resolve(h, "jpeg_start_decompress", &l.start_decompress) &&
                    resolve(h, "jpeg_read_scanlines", &l.read_scanlines) &&
                    resolve(h, "jpeg_finish_decompress", &l.finish_decompress) &&
                    resolve(h, "jpeg_destroy_decompress", &l.destroy_decompress);
    return ok ? &l : nullptr;
  }();
  return lib;
}

// libjpeg's default error handler exits the process: errors jump back here
// instead, and warnings (recoverable corrupt data) are recorded.
struct ErrorManager {
  jpeg_error_mgr pub;
  std::jmp_buf jump;
  bool warned;
  char message[JMSG_LENGTH_MAX];
};

void on_error(j_common_ptr cinfo) {
  auto* err = reinterpret_cast<ErrorManager*>(cinfo->err);
  (*cinfo->err->format_message)(cinfo, err->message);
  std::longjmp(err->jump, 1);
}

void on_message(j_common_ptr cinfo, int level) {
  auto* err = reinterpret_cast<ErrorManager*>(cinfo->err);
  if (level < 0 && !err->warned) {
    err->warned = true;
    (*cinfo->err->format_message)(cinfo, err->message);
  }
}

uint32_t read_u(const uint8_t* p, int n, bool big_endian) {
  uint32_t v = 0;
  for (int i = 0; i < n; ++i) v |= static_cast<uint32_t>(p[big_endian ? i : n - 1 - i]) << (8 * (n - 1 - i));
  return v;
}

// The EXIF orientation of an APP1 segment (1 when it has none), or 0 when the segment cannot be read.
int exif_orientation(const uint8_t* d, size_t n) {
  if (n < 14 || std::memcmp(d, "Exif\0\0", 6) != 0) return 1;
  const uint8_t* t = d + 6;
  const size_t tn = n - 6;
  if (!(t[0] == 'I' && t[1] == 'I') && !(t[0] == 'M' && t[1] == 'M')) return 0;
  const bool be = t[0] == 'M';
  if (read_u(t + 2, 2, be) != 42) return 0;
  const uint32_t ifd = read_u(t + 4, 4, be);
  if (ifd > tn || tn - ifd < 2) return 0;
  const uint32_t count = read_u(t + ifd, 2, be);
  if ((tn - ifd - 2) / 12 < count) return 0;
  for (uint32_t i = 0; i < count; ++i) {
    const uint8_t* e = t + ifd + 2 + 12 * i;
    if (read_u(e, 2, be) == 0x0112) return read_u(e + 2, 2, be) == 3 ? static_cast<int>(read_u(e + 8, 2, be)) : 0;
  }
  return 1;
}

// Why this image is not the common case, or nullptr.
const char* decline_reason(const jpeg_decompress_struct& c) {
  if (c.data_precision != 8) return "not 8-bit";
  if (c.num_components != 3 || (c.jpeg_color_space != JCS_YCbCr && c.jpeg_color_space != JCS_RGB))
    return "not a 3-component YCbCr or RGB image";
  for (jpeg_saved_marker_ptr m = c.marker_list; m; m = m->next) {
    if (m->marker == JPEG_APP0 + 2 && m->data_length >= 12 && std::memcmp(m->data, "ICC_PROFILE\0", 12) == 0)
      return "has an ICC profile";
    if (m->marker == JPEG_APP0 + 1 && exif_orientation(m->data, m->data_length) != 1) return "has an EXIF rotation";
  }
  return nullptr;
}

// Plain C below: nothing with a destructor lives across setjmp.
JpegResult decode(const JpegLib& lib, const uint8_t* data, size_t size, int64_t max_pixels, JpegPixels* out) {
  jpeg_decompress_struct cinfo;
  ErrorManager err;
  cinfo.err = lib.std_error(&err.pub);
  err.pub.error_exit = on_error;
  err.pub.emit_message = on_message;
  err.warned = false;
  err.message[0] = '\0';
  if (setjmp(err.jump)) {
    lib.destroy_decompress(&cinfo);
    out->reason = err.message;
    return JpegResult::kDeclined;
  }
  lib.create_decompress(&cinfo, JPEG_LIB_VERSION, sizeof(cinfo));
  lib.mem_src(&cinfo, data, static_cast<unsigned long>(size));
  lib.save_markers(&cinfo, JPEG_APP0 + 1, 0xffff);
  lib.save_markers(&cinfo, JPEG_APP0 + 2, 0xffff);
  lib.read_header(&cinfo, TRUE);
  const char* why = decline_reason(cinfo);
  if (!why && static_cast<int64_t>(cinfo.image_width) * cinfo.image_height > max_pixels) why = "too many pixels";
  if (why) {
    lib.destroy_decompress(&cinfo);
    out->reason = why;
    return JpegResult::kDeclined;
  }
  cinfo.out_color_space = JCS_RGB;
  lib.start_decompress(&cinfo);
  const size_t stride = static_cast<size_t>(cinfo.output_width) * 3;
  out->width = static_cast<int>(cinfo.output_width);
  out->height = static_cast<int>(cinfo.output_height);
  out->rgb.resize(stride * cinfo.output_height);
  while (cinfo.output_scanline < cinfo.output_height) {
    JSAMPROW row = out->rgb.data() + stride * cinfo.output_scanline;
    lib.read_scanlines(&cinfo, &row, 1);
  }
  lib.finish_decompress(&cinfo);
  lib.destroy_decompress(&cinfo);
  if (err.warned) {  // what else decodes it decides what a damaged image gives
    out->reason = err.message;
    return JpegResult::kDeclined;
  }
  return JpegResult::kDecoded;
}

}  // namespace

bool jpeg_available(std::string* name) {
  const JpegLib* lib = jpeg_lib();
  if (name) *name = lib ? lib->name : "";
  return lib != nullptr;
}

JpegResult decode_jpeg_rgb(const uint8_t* data, size_t size, int64_t max_pixels, JpegPixels* out) {
  const JpegLib* lib = jpeg_lib();
  if (!lib) return JpegResult::kUnavailable;
  if (size < 3 || data[0] != 0xff || data[1] != 0xd8 || data[2] != 0xff) {
    out->reason = "not a JPEG";
    return JpegResult::kDeclined;
  }
  return decode(*lib, data, size, max_pixels, out);
}

#else  // built without jpeglib.h

bool jpeg_available(std::string* name) {
  if (name) name->clear();
  return false;
}

JpegResult decode_jpeg_rgb(const uint8_t*, size_t, int64_t, JpegPixels*) { return JpegResult::kUnavailable; }

#endif

}  // namespace cpu
}  // namespace vl
