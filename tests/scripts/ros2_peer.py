#!/usr/bin/env python3
"""A ROS 2 peer on zenoh, as rmw_zenoh's router and nodes see the `ros2`
bridge: listens on ENDPOINT (where the bridge's ROS 2 side connects, as to
`rmw_zenohd`), watches every data sample under DOMAIN/** and every liveliness
token under @ros2_lv/DOMAIN/**, and sends rviz2-style goals on goal_pose.
Everything is checked with ROS 2 tools that are not this project's: rosbags'
Jazzy type store decodes each payload from the type named in the key, and
computes the type hash (REP 2011) the key must carry. Prints one JSON object.

It runs until its stdin closes (at most 300 s). Goals go out in turn in the
`odom` frame (at GOAL) and in `base_link` (at 9, 9, 9, which the bridge must
refuse).

usage: ros2_peer.py ENDPOINT DOMAIN GOAL_X GOAL_Y GOAL_Z
"""
import json
import os
import struct
import sys
import threading
import time

import zenoh
import zenoh.ext
from rosbags.typesys import Stores, get_typestore

STORE = get_typestore(Stores.ROS2_JAZZY)


def ros_type(dds):
    """`sensor_msgs::msg::dds_::Image_` -> `sensor_msgs/msg/Image`."""
    pkg, kind, dds_, name = dds.split("::")
    assert dds_ == "dds_" and name.endswith("_"), dds
    return f"{pkg}/{kind}/{name[:-1]}"


def main(endpoint, domain, gx, gy, gz):
    conf = zenoh.Config()
    conf.insert_json5("mode", '"peer"')
    conf.insert_json5("listen/endpoints", json.dumps([endpoint]))
    conf.insert_json5("scouting/multicast/enabled", "false")
    session = zenoh.open(conf)
    lock = threading.Lock()
    out = {"topics": {}, "errors": [], "tokens": [], "odom": [], "images": []}
    last_seq = {}

    def on_data(sample):
        key = str(sample.key_expr)
        payload = sample.payload.to_bytes()
        with lock:
            try:
                parts = key.split("/")
                if parts[0] != str(domain):
                    raise ValueError(f"domain chunk {parts[0]}")
                dds, hsh = parts[-2], parts[-1]
                topic = "/" + "/".join(parts[1:-2])
                if topic == "/goal_pose":
                    return  # our own goals
                name = ros_type(dds)
                want = STORE.hash_rihs01(name)
                if hsh != want:
                    raise ValueError(f"{key}: hash {hsh}, rosbags computes {want}")
                msg = STORE.deserialize_cdr(payload, name)
                att = sample.attachment.to_bytes() if sample.attachment is not None else b""
                if len(att) != 33 or att[16] != 0x10:
                    raise ValueError(f"{key}: attachment of {len(att)} bytes: {att.hex()}")
                seq, ts = struct.unpack("<qq", att[:16])
                prev = last_seq.get(key)
                if (prev is None and seq < 1) or (prev is not None and seq <= prev):
                    raise ValueError(f"{key}: sequence {seq} after {prev}")
                if abs(ts - time.time_ns()) > 60e9:
                    raise ValueError(f"{key}: source time {ts} is not now")
                last_seq[key] = seq
                t = out["topics"].setdefault(topic, {"type": name, "count": 0})
                t["count"] += 1
                if topic.endswith("/odom") and t["count"] >= 3:
                    odom_flowing.set()
                if topic.endswith("/odom") and len(out["odom"]) < 50:
                    p = msg.pose.pose.position
                    out["odom"].append({"frame": [msg.header.frame_id, msg.child_frame_id],
                                        "stamp": msg.header.stamp.sec * 10**9 + msg.header.stamp.nanosec,
                                        "p": [p.x, p.y, p.z]})
                if topic.endswith("left/image_raw") and len(out["images"]) < 5:
                    out["images"].append([msg.width, msg.height, msg.encoding, len(msg.data)])
                if topic.endswith("left/camera_info"):
                    out["camera_info_k"] = list(msg.k)
            except Exception as e:  # noqa: BLE001 (reported to the test)
                if len(out["errors"]) < 20:
                    out["errors"].append(f"{key}: {e!r}")

    def on_token(sample):
        with lock:
            out["tokens"].append([str(sample.key_expr), str(sample.kind)])

    odom_flowing = threading.Event()

    def on_late_static(sample):
        with lock:
            try:
                parts = str(sample.key_expr).split("/")
                msg = STORE.deserialize_cdr(sample.payload.to_bytes(), ros_type(parts[-2]))
                late = out.setdefault("tf_static_late", {"count": 0, "children": []})
                late["count"] += 1
                late["children"] = sorted(t.child_frame_id for t in msg.transforms)
            except Exception as e:  # noqa: BLE001 (reported to the test)
                out["errors"].append(f"late /tf_static: {e!r}")

    def join_late():
        # A subscription that joins once odometry flows, long after the
        # bridge sent /tf_static (once, at its start): as tf2's static
        # listener on rmw_zenoh does (transient local = an advanced
        # subscriber that queries the late-found publishers' caches), it
        # can only get the transforms from the publisher's cache.
        if odom_flowing.wait(timeout=300) and not finished.is_set():
            try:
                holder.append(zenoh.ext.declare_advanced_subscriber(
                    session, f"{domain}/tf_static/**", on_late_static,
                    history=zenoh.ext.HistoryConfig(detect_late_publishers=True, max_samples=1)))
            except Exception as e:  # noqa: BLE001 (reported to the test)
                with lock:
                    out["errors"].append(f"late /tf_static subscriber: {e!r}")

    holder = []
    finished = threading.Event()
    late_thread = threading.Thread(target=join_late, daemon=True)
    late_thread.start()
    data = session.declare_subscriber(f"{domain}/**", on_data)
    tokens = session.liveliness().declare_subscriber(f"@ros2_lv/{domain}/**", on_token, history=True)
    # Listening and subscribed: tell the test it may start the graph.
    ready = os.environ.get("ROS2_PEER_READY")
    if ready:
        with open(ready, "w") as f:
            f.write("listening\n")

    # Goals as rviz2 sends them, with an rmw_zenoh attachment.
    Time = STORE.types["builtin_interfaces/msg/Time"]
    Header = STORE.types["std_msgs/msg/Header"]
    Point = STORE.types["geometry_msgs/msg/Point"]
    Quat = STORE.types["geometry_msgs/msg/Quaternion"]
    Pose = STORE.types["geometry_msgs/msg/Pose"]
    PoseStamped = STORE.types["geometry_msgs/msg/PoseStamped"]
    def goal_cdr(frame, x, y, z):
        goal = PoseStamped(Header(Time(1, 2), frame), Pose(Point(x, y, z), Quat(0.0, 0.0, 0.0, 1.0)))
        return bytes(STORE.serialize_cdr(goal, "geometry_msgs/msg/PoseStamped"))
    goals = [goal_cdr("odom", gx, gy, gz), goal_cdr("base_link", 9.0, 9.0, 9.0)]
    done = threading.Event()

    def watch_stdin():
        sys.stdin.read()
        done.set()

    threading.Thread(target=watch_stdin, daemon=True).start()
    gkey = (f"{domain}/goal_pose/geometry_msgs::msg::dds_::PoseStamped_/"
            f"{STORE.hash_rihs01('geometry_msgs/msg/PoseStamped')}")
    t0 = time.time()
    seq = 0
    while not done.is_set() and time.time() - t0 < 300:
        att = struct.pack("<qq", seq + 1, time.time_ns()) + bytes([16]) + bytes(range(16))
        session.put(gkey, goals[seq % 2], attachment=att)
        seq += 1
        time.sleep(0.1)
    data.undeclare()
    tokens.undeclare()
    finished.set()
    odom_flowing.set()
    late_thread.join()
    for h in holder:
        h.undeclare()
    with lock:
        json.dump(out, sys.stdout)
    sys.stdout.flush()
    session.close()
    # The zenoh binding's background threads can abort the interpreter's
    # own shutdown ("FATAL: exception not rethrown") after the result is
    # written; end the process here, the result already out.
    os._exit(0)


if __name__ == "__main__":
    a = sys.argv
    main(a[1], int(a[2]), float(a[3]), float(a[4]), float(a[5]))
