#!/usr/bin/env python3
"""Reads an `agent record` file with ROS 2 tools only, and prints what it
found as one JSON object, for tests/tests/e2e/graph.rs to compare with the bus.

Two independent readers: mcap-ros2-support (Foxglove's ROS 2 decoder, driven
by the file's own `ros2msg` schemas) decodes every message of every channel;
rosbags opens the file as a rosbag2 MCAP bag and decodes every message with
its own ROS 2 type store (Humble's definitions, not the file's). Both must
agree on every pose, and every message must decode in both.
"""
import json
import struct
import sys
import zlib

from mcap.reader import make_reader
from mcap_ros2.decoder import DecoderFactory
from rosbags.rosbag2 import Reader
from rosbags.typesys import Stores, get_typestore


def bits(x):
    return struct.unpack("<Q", struct.pack("<d", x))[0]


def main(path):
    out = {"channels": {}, "odom": {}, "images": {}, "camera_info": {},
           "depth": {}, "twist": {}, "tf_static": [], "log": []}
    with open(path, "rb") as f:
        reader = make_reader(f, decoder_factories=[DecoderFactory()])
        for schema, channel, message, ros in reader.iter_decoded_messages():
            ch = out["channels"].setdefault(channel.topic, {
                "type": schema.name, "encoding": channel.message_encoding,
                "schema_encoding": schema.encoding, "count": 0})
            ch["count"] += 1
            seq = message.sequence
            t = channel.topic
            if t == "/odom":
                p, q, v = ros.pose.pose.position, ros.pose.pose.orientation, ros.twist.twist.linear
                out["odom"][seq] = {
                    "stamp": [ros.header.stamp.sec, ros.header.stamp.nanosec],
                    "frame": [ros.header.frame_id, ros.child_frame_id],
                    "p": [p.x, p.y, p.z], "q": [q.x, q.y, q.z, q.w], "v": [v.x, v.y, v.z],
                    # The same as IEEE-754 bits, for comparisons that must be exact.
                    "bits": [bits(x) for x in (p.x, p.y, p.z, q.x, q.y, q.z, q.w, v.x, v.y, v.z)]}
            elif t.endswith("/image_raw"):
                side = "left" if "/left/" in t else "right"
                out["images"].setdefault(side, {})[seq] = {
                    "size": [ros.width, ros.height], "encoding": ros.encoding,
                    "step": ros.step, "frame": ros.header.frame_id,
                    "crc": zlib.adler32(bytes(ros.data))}
            elif t.endswith("/camera_info"):
                side = "left" if "/left/" in t else "right"
                out["camera_info"][side] = {
                    "k": list(ros.k), "p": list(ros.p), "d": list(ros.d),
                    "size": [ros.width, ros.height], "frame": ros.header.frame_id}
            elif t == "/depth/stereo":
                out["depth"][seq] = {"encoding": ros.encoding, "size": [ros.width, ros.height],
                                     "crc": zlib.adler32(bytes(ros.data))}
            elif t == "/cmd/setpoint":
                out["twist"][seq] = [ros.twist.linear.x, ros.twist.linear.y,
                                     ros.twist.linear.z, ros.twist.angular.z]
            elif t == "/tf_static":
                for tr in ros.transforms:
                    r = tr.transform.rotation
                    out["tf_static"].append({
                        "parent": tr.header.frame_id, "child": tr.child_frame_id,
                        "t": [tr.transform.translation.x, tr.transform.translation.y,
                              tr.transform.translation.z],
                        "q": [r.x, r.y, r.z, r.w]})
            elif t == "/rosout":
                out["log"].append([ros.name, ros.msg])

    store = get_typestore(Stores.ROS2_HUMBLE)
    counts = {}
    qos = {}
    with Reader(path) as bag:
        # The QoS each topic was offered with, as rosbags parses rosbag2's
        # `offered_qos_profiles` (what `ros2 bag play` offers again).
        for conn in bag.connections:
            profiles = conn.ext.offered_qos_profiles
            qos[conn.topic] = [{"reliability": q.reliability.name, "durability": q.durability.name,
                                "history": q.history.name, "depth": q.depth} for q in profiles]
        for conn, _, raw in bag.messages():
            msg = store.deserialize_cdr(raw, conn.msgtype)
            counts[conn.topic] = counts.get(conn.topic, 0) + 1
            if conn.topic == "/odom":
                p = msg.pose.pose.position
                key = [k for k, o in out["odom"].items()
                       if o["stamp"] == [msg.header.stamp.sec, msg.header.stamp.nanosec]]
                if not key or out["odom"][key[0]]["p"] != [p.x, p.y, p.z]:
                    sys.exit(f"rosbags and mcap-ros2-support disagree on an odometry pose: {p}")
    out["rosbags_counts"] = counts
    out["qos"] = qos
    json.dump(out, sys.stdout)


if __name__ == "__main__":
    main(sys.argv[1])
