"""The CCTV edge agent: reads local cameras, masks, encrypts and relays to the Command Centre."""

import os

__version__ = "0.1.0"

# OpenCV/FFmpeg read these when a capture opens. Quiet FFmpeg's own logging (it is noisy and
# not ours to print), and pull RTSP over TCP: UDP loses packets of large 4 MP frames.
os.environ.setdefault("OPENCV_LOG_LEVEL", "ERROR")
os.environ.setdefault("OPENCV_FFMPEG_LOGLEVEL", "-8")
os.environ.setdefault("OPENCV_FFMPEG_CAPTURE_OPTIONS", "rtsp_transport;tcp")
