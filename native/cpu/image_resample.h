// The evaluation preprocessing of the released models, on 8-bit pixels:
// bicubic resize as Pillow computes it (what torchvision's Resize does to a
// PIL image), a crop of the resized image, then (v/255 - mean)/std as
// channels-first floats. Only the cropped pixels are computed.
#pragma once
#include <cstdint>

namespace vl {
namespace cpu {

struct ResampleSpec {
  int src_w = 0, src_h = 0, channels = 0;  // interleaved u8 source, 1..4 channels
  int resize_w = 0, resize_h = 0;          // the resized image (the source size: no resize)
  int left = 0, top = 0, out_w = 0, out_h = 0;  // the crop window inside the resized image
  float mean[4] = {0, 0, 0, 0}, std[4] = {1, 1, 1, 1};
};

// Throws vl::Error (Argument) naming what is wrong with the sizes, channels or statistics.
void check_resample_spec(const ResampleSpec& spec);

// src: src_h x src_w x channels bytes; dst: channels planes of out_h x out_w
// floats. Checks the spec first.
void resample_normalize(const uint8_t* src, const ResampleSpec& spec, float* dst);

}  // namespace cpu
}  // namespace vl
