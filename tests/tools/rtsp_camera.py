"""A camera stand-in for tests/tests/rtsp_pull.rs: GStreamer's RTSP server
(gst-rtsp-server through python3-gi) serving rtsp://127.0.0.1:PORT/cam,
H.264 (x264enc, 1 s GOP) + AAC, with Digest authentication only.

Usage: /usr/bin/python3 rtsp_camera.py PORT USER PASSWORD
Prints `ready` once listening."""
import sys, gi
gi.require_version('Gst', '1.0'); gi.require_version('GstRtspServer', '1.0'); gi.require_version('GstRtsp', '1.0')
from gi.repository import Gst, GstRtsp, GstRtspServer, GLib
Gst.init(None)
port, user, password = sys.argv[1], sys.argv[2], sys.argv[3]
server = GstRtspServer.RTSPServer()
server.set_service(port)
factory = GstRtspServer.RTSPMediaFactory()
factory.set_launch('( videotestsrc is-live=true ! video/x-raw,width=320,height=240,framerate=25/1 ! x264enc tune=zerolatency key-int-max=25 bitrate=500 ! rtph264pay name=pay0 pt=96 config-interval=1 audiotestsrc is-live=true wave=sine ! audioconvert ! audioresample ! avenc_aac ! rtpmp4gpay name=pay1 pt=97 )')
factory.set_shared(True)
auth = GstRtspServer.RTSPAuth()
auth.set_supported_methods(GstRtsp.RTSPAuthMethod.DIGEST)
token = GstRtspServer.RTSPToken(); token.set_string('media.factory.role', 'user')
auth.add_digest(user, password, token)
server.set_auth(auth)
perm = GstRtspServer.RTSPPermissions()
perm.add_permission_for_role('user', 'media.factory.access', True)
perm.add_permission_for_role('user', 'media.factory.construct', True)
factory.set_permissions(perm)
server.get_mount_points().add_factory('/cam', factory)
server.attach(None)
print('ready', flush=True)
GLib.MainLoop().run()
