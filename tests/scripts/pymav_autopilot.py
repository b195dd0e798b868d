#!/usr/bin/env python3
"""A PX4-like autopilot on pymavlink, for the MAVLink tests.

Usage: pymav_autopilot.py PORT REFUSE_HOLDS SECONDS [posctl]

Listens on udpin:127.0.0.1:PORT and answers whoever sends first: heartbeats at
1 Hz with PX4's custom mode (main mode << 16 | sub mode << 24) and the armed
flag, ATTITUDE at 50 Hz, LOCAL_POSITION_NED at 10 Hz; arms and disarms; takes
MAV_CMD_DO_SET_MODE. The first REFUSE_HOLDS requests for Hold (Auto / Loiter,
main mode 4, sub mode 3) are refused: acknowledged TEMPORARILY_REJECTED and the
mode left as it was, as PX4 does when a mode's preconditions fail; with
`posctl`, a refused Hold puts it in Position mode instead (main mode 3), as a
pilot taking over does. Every mode
request is printed as one JSON line; it exits after SECONDS.
Needs `pip install pymavlink` (tests/prepare.sh).
"""
import json
import sys
import time

from pymavlink import mavutil

port, refuse_holds, seconds = int(sys.argv[1]), int(sys.argv[2]), float(sys.argv[3])
posctl = len(sys.argv) > 4 and sys.argv[4] == "posctl"
m = mavutil.mavlink_connection(
    "udpin:127.0.0.1:%d" % port, source_system=1, source_component=1, dialect="common"
)
mav = mavutil.mavlink
armed, main_mode, sub_mode, refused = False, 0, 0, 0
heard = False
start = time.monotonic()
next_hb = next_att = next_pos = start


def out(**kw):
    kw["t"] = round(time.monotonic() - start, 3)
    print(json.dumps(kw), flush=True)


while time.monotonic() - start < seconds:
    msg = m.recv_match(blocking=True, timeout=0.005)
    if msg is not None and msg.get_type() != "BAD_DATA":
        heard = True
        if msg.get_type() == "COMMAND_LONG":
            result = mav.MAV_RESULT_ACCEPTED
            if msg.command == mav.MAV_CMD_COMPONENT_ARM_DISARM:
                armed = msg.param1 == 1.0
            elif msg.command == mav.MAV_CMD_DO_SET_MODE:
                main, sub = int(msg.param2), int(msg.param3)
                hold = (main, sub) == (4, 3)
                if hold and refused < refuse_holds:
                    refused += 1
                    result = mav.MAV_RESULT_TEMPORARILY_REJECTED
                    if posctl:
                        main_mode, sub_mode = 3, 0
                else:
                    main_mode, sub_mode = main, sub
                out(event="mode", main=main, sub=sub, accepted=result == mav.MAV_RESULT_ACCEPTED)
            else:
                result = mav.MAV_RESULT_UNSUPPORTED
            m.mav.command_ack_send(msg.command, result)
    if not heard:
        continue
    now = time.monotonic()
    if now >= next_hb:
        next_hb = now + 1.0
        base = mav.MAV_MODE_FLAG_CUSTOM_MODE_ENABLED
        if armed:
            base |= mav.MAV_MODE_FLAG_SAFETY_ARMED
        m.mav.heartbeat_send(
            mav.MAV_TYPE_QUADROTOR,
            mav.MAV_AUTOPILOT_PX4,
            base,
            (main_mode << 16) | (sub_mode << 24),
            mav.MAV_STATE_STANDBY,
        )
    if now >= next_att:
        next_att = now + 0.02
        m.mav.attitude_send(int((now - start) * 1000), 0.0, 0.0, 1.0, 0.0, 0.0, 0.0)
    if now >= next_pos:
        next_pos = now + 0.1
        m.mav.local_position_ned_send(int((now - start) * 1000), 1.0, 2.0, -3.0, 0.0, 0.0, 0.0)
