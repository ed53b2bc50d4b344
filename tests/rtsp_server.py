#!/usr/bin/env python3
"""A loopback RTSP server for the tests: gst-rtsp-server (Debian's gir1.2-gst-rtsp-server-1.0)
relaying the H.264 RTP stream an ffmpeg sender writes to 127.0.0.1:RTP_PORT as rtsp://127.0.0.1:
RTSP_PORT/cam, over TCP interleaving or UDP as the client asks.

    python3 tests/rtsp_server.py RTSP_PORT RTP_PORT

Prints "listening" once bound; runs until killed.
"""
import sys

import gi

gi.require_version("Gst", "1.0")
gi.require_version("GstRtspServer", "1.0")
from gi.repository import GLib, Gst, GstRtspServer  # noqa: E402

rtsp_port, rtp_port = sys.argv[1], int(sys.argv[2])
Gst.init(None)
server = GstRtspServer.RTSPServer()
server.set_address("127.0.0.1")
server.set_service(rtsp_port)
factory = GstRtspServer.RTSPMediaFactory()
factory.set_launch(
    f'( udpsrc address=127.0.0.1 port={rtp_port} '
    'caps="application/x-rtp,media=video,clock-rate=90000,encoding-name=H264,payload=96" '
    "! rtph264depay ! h264parse config-interval=-1 ! rtph264pay name=pay0 pt=96 config-interval=1 )"
)
factory.set_shared(True)
server.get_mount_points().add_factory("/cam", factory)
if server.attach(None) == 0:
    sys.exit("cannot bind the RTSP port")
print("listening", flush=True)
GLib.MainLoop().run()
