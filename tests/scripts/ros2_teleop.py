#!/usr/bin/env python3
"""A ROS 2 teleop node on rmw_zenoh's wire, written without this project's
code: it listens where rmw_zenoh's router would (ENDPOINT) and publishes
`geometry_msgs/msg/Twist` on `cmd_vel` of ROS domain DOMAIN at 20 Hz, as
`teleop_twist_keyboard` would with a key held down, until its stdin closes.

The key expression, type hash (REP 2011, computed by rosbags from its Jazzy
type store), CDR payload and 33-byte attachment (sequence number, source
time, GID) are rmw_zenoh's. Prints how many commands it sent.

Usage: ros2_teleop.py ENDPOINT DOMAIN FORWARD LEFT UP YAW_RATE
"""
import json
import struct
import sys
import threading
import time

import zenoh
from rosbags.typesys import Stores, get_typestore

STORE = get_typestore(Stores.ROS2_JAZZY)


def main(endpoint, domain, forward, left, up, yaw_rate):
    conf = zenoh.Config()
    conf.insert_json5("mode", '"peer"')
    conf.insert_json5("listen/endpoints", json.dumps([endpoint]))
    conf.insert_json5("scouting/multicast/enabled", "false")
    session = zenoh.open(conf)
    Twist = STORE.types["geometry_msgs/msg/Twist"]
    Vector3 = STORE.types["geometry_msgs/msg/Vector3"]
    twist = Twist(Vector3(forward, left, up), Vector3(0.0, 0.0, yaw_rate))
    cdr = bytes(STORE.serialize_cdr(twist, "geometry_msgs/msg/Twist"))
    key = (f"{domain}/cmd_vel/geometry_msgs::msg::dds_::Twist_/"
           f"{STORE.hash_rihs01('geometry_msgs/msg/Twist')}")
    done = threading.Event()

    def watch_stdin():
        sys.stdin.read()
        done.set()

    threading.Thread(target=watch_stdin, daemon=True).start()
    gid = bytes(range(100, 116))
    seq = 0
    t0 = time.time()
    while not done.is_set() and time.time() - t0 < 600:
        seq += 1
        att = struct.pack("<qq", seq, time.time_ns()) + bytes([16]) + gid
        session.put(key, cdr, attachment=att)
        time.sleep(0.05)
    json.dump({"sent": seq}, sys.stdout)
    session.close()


if __name__ == "__main__":
    a = sys.argv
    main(a[1], int(a[2]), *(float(x) for x in a[3:7]))
