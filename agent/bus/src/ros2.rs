//! The bus's messages as ROS 2 messages: the types of ROS 2's
//! `common_interfaces` (`sensor_msgs`, `geometry_msgs`, `nav_msgs`, `tf2_msgs`,
//! `rcl_interfaces`), their `.msg` definitions (MCAP's `ros2msg` schema
//! encoding) and their CDR encoding (MCAP's `cdr` message encoding, the
//! payload of a DDS/RTPS sample: a 4-byte encapsulation header, then
//! little-endian XCDR1), so that Foxglove, `ros2 bag`, `rosbags` and rerun read
//! a recording without this project's code.
//!
//! The CDR itself is `cdr-encoding`'s (the serializer of RustDDS) through
//! serde; this module holds the message layouts and the mapping from and to
//! the bus's messages. The mapping loses nothing a replay needs: see
//! [`Mapped`] for what lives where.

use byteorder::{BigEndian, LittleEndian};
use serde::{Deserialize, Serialize};

use crate::msg;

/// `builtin_interfaces/msg/Time`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Time {
    /// Seconds (ROS 2's own limit: 2038 on a UNIX clock).
    pub sec: i32,
    /// Nanoseconds within the second.
    pub nanosec: u32,
}

impl Time {
    /// From nanoseconds (a bus stamp); seconds past `i32::MAX` saturate.
    pub fn from_ns(ns: u64) -> Time {
        Time {
            sec: i32::try_from(ns / 1_000_000_000).unwrap_or(i32::MAX),
            nanosec: (ns % 1_000_000_000) as u32,
        }
    }

    /// To nanoseconds (a negative time is 0).
    pub fn to_ns(self) -> u64 {
        u64::try_from(self.sec).unwrap_or(0) * 1_000_000_000 + u64::from(self.nanosec)
    }
}

/// `std_msgs/msg/Header`.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct Header {
    /// Capture time.
    pub stamp: Time,
    /// The tf frame the data is in.
    pub frame_id: String,
}

/// `sensor_msgs/msg/Image`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Image {
    /// Stamp and optical frame.
    pub header: Header,
    /// Rows.
    pub height: u32,
    /// Columns.
    pub width: u32,
    /// `mono8`, `32FC1`, ...
    pub encoding: String,
    /// 1 when multi-byte pixels are big-endian.
    pub is_bigendian: u8,
    /// Bytes per row.
    pub step: u32,
    /// Pixels, row-major.
    #[serde(with = "serde_bytes")]
    pub data: Vec<u8>,
}

/// `sensor_msgs/msg/RegionOfInterest`.
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize, Deserialize)]
pub struct RegionOfInterest {
    /// Left column.
    pub x_offset: u32,
    /// Top row.
    pub y_offset: u32,
    /// Rows (0: the whole image).
    pub height: u32,
    /// Columns (0: the whole image).
    pub width: u32,
    /// Whether the region is to be rectified.
    pub do_rectify: bool,
}

/// `sensor_msgs/msg/CameraInfo`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CameraInfo {
    /// Stamp and optical frame (the image's).
    pub header: Header,
    /// Rows.
    pub height: u32,
    /// Columns.
    pub width: u32,
    /// `plumb_bob` (D = k1 k2 t1 t2 k3).
    pub distortion_model: String,
    /// Distortion (zeros: the images are rectified).
    pub d: Vec<f64>,
    /// Intrinsics, row-major 3x3.
    pub k: [f64; 9],
    /// Rectifying rotation, row-major 3x3.
    pub r: [f64; 9],
    /// Projection, row-major 3x4 (the right camera's has `Tx = -fx * baseline`).
    pub p: [f64; 12],
    /// Horizontal binning.
    pub binning_x: u32,
    /// Vertical binning.
    pub binning_y: u32,
    /// Region of interest (all zeros: the whole image).
    pub roi: RegionOfInterest,
}

/// `geometry_msgs/msg/Vector3`.
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize, Deserialize)]
pub struct Vector3 {
    /// x.
    pub x: f64,
    /// y.
    pub y: f64,
    /// z.
    pub z: f64,
}

/// `geometry_msgs/msg/Twist`.
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize, Deserialize)]
pub struct Twist {
    /// m/s.
    pub linear: Vector3,
    /// rad/s.
    pub angular: Vector3,
}

/// `geometry_msgs/msg/TwistStamped`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TwistStamped {
    /// Stamp and the frame the twist is in.
    pub header: Header,
    /// The twist.
    pub twist: Twist,
}

/// `geometry_msgs/msg/Point`.
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize, Deserialize)]
pub struct Point {
    /// x.
    pub x: f64,
    /// y.
    pub y: f64,
    /// z.
    pub z: f64,
}

/// `geometry_msgs/msg/Quaternion` (x, y, z, w: ROS's order).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Quaternion {
    /// x.
    pub x: f64,
    /// y.
    pub y: f64,
    /// z.
    pub z: f64,
    /// w.
    pub w: f64,
}

impl Quaternion {
    /// No rotation.
    pub const IDENTITY: Quaternion = Quaternion {
        x: 0.0,
        y: 0.0,
        z: 0.0,
        w: 1.0,
    };
}

/// `geometry_msgs/msg/Pose`.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Pose {
    /// Position.
    pub position: Point,
    /// Orientation.
    pub orientation: Quaternion,
}

/// A row-major 6x6 covariance (`float64[36]`; serde's arrays stop at 32).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Covariance(pub [f64; 36]);

impl Serialize for Covariance {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeTuple;
        let mut t = s.serialize_tuple(36)?;
        for v in &self.0 {
            t.serialize_element(v)?;
        }
        t.end()
    }
}

impl<'de> Deserialize<'de> for Covariance {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> serde::de::Visitor<'de> for V {
            type Value = Covariance;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("36 float64")
            }
            fn visit_seq<A: serde::de::SeqAccess<'de>>(
                self,
                mut a: A,
            ) -> Result<Covariance, A::Error> {
                let mut c = [0.0; 36];
                for (i, v) in c.iter_mut().enumerate() {
                    *v = a
                        .next_element()?
                        .ok_or_else(|| serde::de::Error::invalid_length(i, &self))?;
                }
                Ok(Covariance(c))
            }
        }
        d.deserialize_tuple(36, V)
    }
}

/// `geometry_msgs/msg/PoseWithCovariance`.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct PoseWithCovariance {
    /// Pose.
    pub pose: Pose,
    /// Its covariance (zeros: not estimated).
    pub covariance: Covariance,
}

/// `geometry_msgs/msg/TwistWithCovariance`.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct TwistWithCovariance {
    /// Twist.
    pub twist: Twist,
    /// Its covariance (zeros: not estimated).
    pub covariance: Covariance,
}

/// `nav_msgs/msg/Odometry`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Odometry {
    /// Stamp and the world frame (`odom`).
    pub header: Header,
    /// The body frame (`base_link`), which the twist is in.
    pub child_frame_id: String,
    /// Pose in the world frame.
    pub pose: PoseWithCovariance,
    /// Velocity in the body frame.
    pub twist: TwistWithCovariance,
}

/// `geometry_msgs/msg/PoseStamped`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PoseStamped {
    /// Stamp and frame.
    pub header: Header,
    /// Pose.
    pub pose: Pose,
}

/// `geometry_msgs/msg/Transform`.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Transform {
    /// Translation (m).
    pub translation: Vector3,
    /// Rotation.
    pub rotation: Quaternion,
}

/// `geometry_msgs/msg/TransformStamped`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TransformStamped {
    /// Stamp and parent frame.
    pub header: Header,
    /// Child frame.
    pub child_frame_id: String,
    /// Child in parent.
    pub transform: Transform,
}

/// `tf2_msgs/msg/TFMessage`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TfMessage {
    /// The transforms.
    pub transforms: Vec<TransformStamped>,
}

/// `rcl_interfaces/msg/Log` (what ROS 2 nodes send to `/rosout`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Log {
    /// When.
    pub stamp: Time,
    /// 10 debug, 20 info, 30 warn, 40 error, 50 fatal.
    pub level: u8,
    /// The sender.
    pub name: String,
    /// The text.
    pub msg: String,
    /// Source file.
    pub file: String,
    /// Function.
    pub function: String,
    /// Line.
    pub line: u32,
}

/// `diagnostic_msgs/msg/KeyValue`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct KeyValue {
    /// Name of the value.
    pub key: String,
    /// The value, as text.
    pub value: String,
}

/// `diagnostic_msgs/msg/DiagnosticStatus`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DiagnosticStatus {
    /// 0 OK, 1 WARN, 2 ERROR, 3 STALE.
    pub level: u8,
    /// The component (`fc`, `camera`).
    pub name: String,
    /// A one-line summary.
    pub message: String,
    /// The device.
    pub hardware_id: String,
    /// Its figures, each written so that it parses back to the same number.
    pub values: Vec<KeyValue>,
}

/// `diagnostic_msgs/msg/DiagnosticArray` (what ROS 2 robots send on `/diagnostics`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DiagnosticArray {
    /// Stamp.
    pub header: Header,
    /// One status per component.
    pub status: Vec<DiagnosticStatus>,
}

/// `rcl_interfaces/msg/Log`'s info level.
pub const LOG_INFO: u8 = 20;

/// Why bytes are not a CDR message of the expected type.
#[derive(Debug, thiserror::Error)]
pub enum CdrError {
    /// Shorter than the encapsulation header.
    #[error("{0} bytes: shorter than the 4-byte CDR encapsulation header")]
    Short(usize),
    /// An encapsulation other than plain CDR (little- or big-endian).
    #[error("encapsulation {0:#06x} is not plain CDR (0x0000 or 0x0001)")]
    Encapsulation(u16),
    /// The body does not decode.
    #[error("CDR body: {0}")]
    Body(String),
}

/// A message's CDR bytes: encapsulation CDR_LE (`00 01 00 00`), then the body.
pub fn encode<T: Serialize>(m: &T) -> Vec<u8> {
    let mut out = vec![0x00, 0x01, 0x00, 0x00];
    // Serializing to memory fails only for types serde cannot express in CDR
    // (maps without a length, ...), which none of the above is.
    match cdr_encoding::to_vec::<T, LittleEndian>(m) {
        Ok(body) => out.extend_from_slice(&body),
        Err(e) => unreachable!("CDR serialization of a fixed message type failed: {e}"),
    }
    out
}

/// A message from its CDR bytes (either byte order).
pub fn decode<'de, T: Deserialize<'de>>(bytes: &'de [u8]) -> Result<T, CdrError> {
    let [a, b, _, _, body @ ..] = bytes else {
        return Err(CdrError::Short(bytes.len()));
    };
    let body_err = |e: cdr_encoding::Error| CdrError::Body(e.to_string());
    match u16::from_be_bytes([*a, *b]) {
        0x0001 => Ok(cdr_encoding::from_bytes::<T, LittleEndian>(body)
            .map_err(body_err)?
            .0),
        0x0000 => Ok(cdr_encoding::from_bytes::<T, BigEndian>(body)
            .map_err(body_err)?
            .0),
        other => Err(CdrError::Encapsulation(other)),
    }
}

/// The line between a `.msg` definition and each type it uses (MCAP's
/// `ros2msg` schema encoding, as `rosbag2` writes it).
const SEPARATOR: &str =
    "================================================================================\n";

const TIME: (&str, &str) = ("builtin_interfaces/Time", "int32 sec\nuint32 nanosec\n");
const HEADER: (&str, &str) = (
    "std_msgs/Header",
    "builtin_interfaces/Time stamp\nstring frame_id\n",
);
const VECTOR3: (&str, &str) = ("geometry_msgs/Vector3", "float64 x\nfloat64 y\nfloat64 z\n");
const POINT: (&str, &str) = ("geometry_msgs/Point", "float64 x\nfloat64 y\nfloat64 z\n");
const QUATERNION: (&str, &str) = (
    "geometry_msgs/Quaternion",
    "float64 x 0\nfloat64 y 0\nfloat64 z 0\nfloat64 w 1\n",
);
const TWIST: (&str, &str) = ("geometry_msgs/Twist", "Vector3 linear\nVector3 angular\n");
const POSE: (&str, &str) = (
    "geometry_msgs/Pose",
    "Point position\nQuaternion orientation\n",
);
const TRANSFORM: (&str, &str) = (
    "geometry_msgs/Transform",
    "Vector3 translation\nQuaternion rotation\n",
);
const TRANSFORM_STAMPED: (&str, &str) = (
    "geometry_msgs/TransformStamped",
    "std_msgs/Header header\nstring child_frame_id\nTransform transform\n",
);

/// A ROS 2 message type: its name and its `ros2msg` schema text.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RosType {
    /// `sensor_msgs/msg/Image`.
    Image,
    /// `sensor_msgs/msg/CameraInfo`.
    CameraInfo,
    /// `geometry_msgs/msg/TwistStamped`.
    TwistStamped,
    /// `nav_msgs/msg/Odometry`.
    Odometry,
    /// `geometry_msgs/msg/PoseStamped`.
    PoseStamped,
    /// `tf2_msgs/msg/TFMessage`.
    TfMessage,
    /// `rcl_interfaces/msg/Log`.
    Log,
    /// `geometry_msgs/msg/Twist` (what ROS 2 planners send on `/cmd_vel`).
    Twist,
    /// `diagnostic_msgs/msg/DiagnosticArray`.
    DiagnosticArray,
}

impl RosType {
    /// The full type name (`sensor_msgs/msg/Image`).
    pub fn name(self) -> &'static str {
        match self {
            RosType::Image => "sensor_msgs/msg/Image",
            RosType::CameraInfo => "sensor_msgs/msg/CameraInfo",
            RosType::TwistStamped => "geometry_msgs/msg/TwistStamped",
            RosType::Odometry => "nav_msgs/msg/Odometry",
            RosType::PoseStamped => "geometry_msgs/msg/PoseStamped",
            RosType::TfMessage => "tf2_msgs/msg/TFMessage",
            RosType::Log => "rcl_interfaces/msg/Log",
            RosType::Twist => "geometry_msgs/msg/Twist",
            RosType::DiagnosticArray => "diagnostic_msgs/msg/DiagnosticArray",
        }
    }

    /// The type's hash as ROS 2 (Jazzy and later) names it in rmw_zenoh's key
    /// expressions: REP 2011's RIHS01 (SHA-256 of the type description).
    /// Constants, as ROS 2's own generated code has them; the test
    /// `ros2_bridge_matches_rmw_zenoh_keys` checks each against rosbags'
    /// computation from the Jazzy definitions.
    pub fn hash(self) -> &'static str {
        match self {
            RosType::Image => {
                "RIHS01_d31d41a9a4c4bc8eae9be757b0beed306564f7526c88ea6a4588fb9582527d47"
            }
            RosType::CameraInfo => {
                "RIHS01_b3dfd68ff46c9d56c80fd3bd4ed22c7a4ddce8c8348f2f59c299e73118e7e275"
            }
            RosType::TwistStamped => {
                "RIHS01_5f0fcd4f81d5d06ad9b4c4c63e3ea51b82d6ae4d0558f1d475229b1121db6f64"
            }
            RosType::Odometry => {
                "RIHS01_3cc97dc7fb7502f8714462c526d369e35b603cfc34d946e3f2eda2766dfec6e0"
            }
            RosType::PoseStamped => {
                "RIHS01_10f3786d7d40fd2b54367835614bff85d4ad3b5dab62bf8bca0cc232d73b4cd8"
            }
            RosType::TfMessage => {
                "RIHS01_e369d0f05a23ae52508854b66f6aa0437f3449d652e8cbf22d5abe85d020f087"
            }
            RosType::Log => {
                "RIHS01_e28ce254ca8abc06abf92773b74602cdbf116ed34fbaf294fb9f81da9f318eac"
            }
            RosType::Twist => {
                "RIHS01_9c45bf16fe0983d80e3cfe750d6835843d265a9a6c46bd2e609fcddde6fb8d2a"
            }
            RosType::DiagnosticArray => {
                "RIHS01_5a8a36efb05fb25070fa0fb3810290c0e6cd4862b54a8fb975a1ee8dc55a333e"
            }
        }
    }

    /// The name DDS and rmw_zenoh give the type (`sensor_msgs::msg::dds_::Image_`).
    pub fn dds_name(self) -> String {
        let name = self.name();
        let (pkg_msg, ty) = name.rsplit_once('/').unwrap_or(("", name));
        format!("{}::dds_::{ty}_", pkg_msg.replace('/', "::"))
    }

    /// The `.msg` definition followed by those of the types it uses.
    pub fn schema(self) -> String {
        let (top, deps): (&str, &[(&str, &str)]) = match self {
            RosType::Image => (
                "std_msgs/Header header\nuint32 height\nuint32 width\nstring encoding\nuint8 is_bigendian\nuint32 step\nuint8[] data\n",
                &[HEADER, TIME],
            ),
            RosType::CameraInfo => (
                "std_msgs/Header header\nuint32 height\nuint32 width\nstring distortion_model\nfloat64[] d\nfloat64[9] k\nfloat64[9] r\nfloat64[12] p\nuint32 binning_x\nuint32 binning_y\nRegionOfInterest roi\n",
                &[
                    HEADER,
                    TIME,
                    (
                        "sensor_msgs/RegionOfInterest",
                        "uint32 x_offset\nuint32 y_offset\nuint32 height\nuint32 width\nbool do_rectify\n",
                    ),
                ],
            ),
            RosType::TwistStamped => (
                "std_msgs/Header header\nTwist twist\n",
                &[HEADER, TIME, TWIST, VECTOR3],
            ),
            RosType::Odometry => (
                "std_msgs/Header header\nstring child_frame_id\ngeometry_msgs/PoseWithCovariance pose\ngeometry_msgs/TwistWithCovariance twist\n",
                &[
                    HEADER,
                    TIME,
                    (
                        "geometry_msgs/PoseWithCovariance",
                        "Pose pose\nfloat64[36] covariance\n",
                    ),
                    POSE,
                    POINT,
                    QUATERNION,
                    (
                        "geometry_msgs/TwistWithCovariance",
                        "Twist twist\nfloat64[36] covariance\n",
                    ),
                    TWIST,
                    VECTOR3,
                ],
            ),
            RosType::PoseStamped => (
                "std_msgs/Header header\nPose pose\n",
                &[HEADER, TIME, POSE, POINT, QUATERNION],
            ),
            RosType::TfMessage => (
                "geometry_msgs/TransformStamped[] transforms\n",
                &[
                    TRANSFORM_STAMPED,
                    HEADER,
                    TIME,
                    TRANSFORM,
                    VECTOR3,
                    QUATERNION,
                ],
            ),
            RosType::Twist => ("Vector3 linear\nVector3 angular\n", &[VECTOR3]),
            RosType::DiagnosticArray => (
                "std_msgs/Header header\nDiagnosticStatus[] status\n",
                &[
                    HEADER,
                    TIME,
                    (
                        "diagnostic_msgs/DiagnosticStatus",
                        "byte OK=0\nbyte WARN=1\nbyte ERROR=2\nbyte STALE=3\nbyte level\nstring name\nstring message\nstring hardware_id\nKeyValue[] values\n",
                    ),
                    ("diagnostic_msgs/KeyValue", "string key\nstring value\n"),
                ],
            ),
            RosType::Log => (
                "uint8 DEBUG=10\nuint8 INFO=20\nuint8 WARN=30\nuint8 ERROR=40\nuint8 FATAL=50\nbuiltin_interfaces/Time stamp\nuint8 level\nstring name\nstring msg\nstring file\nstring function\nuint32 line\n",
                &[TIME],
            ),
        };
        let mut s = top.to_string();
        for (name, text) in deps {
            s.push_str(SEPARATOR);
            s.push_str("MSG: ");
            s.push_str(name);
            s.push('\n');
            s.push_str(text);
        }
        s
    }
}

/// tf frame of the left camera's optical axes (z forward, x right, y down).
pub const LEFT_OPTICAL: &str = "camera_left_optical_frame";
/// tf frame of the right camera's optical axes.
pub const RIGHT_OPTICAL: &str = "camera_right_optical_frame";
/// tf frame of the vehicle body (REP 103: x forward, y left, z up).
pub const BODY: &str = "base_link";
/// tf frame of the world the state is given in.
pub const WORLD: &str = "odom";

/// A bus message written as ROS 2 messages. What a replay needs and the ROS
/// type has no field for is kept beside it: the bus header's sequence number
/// is the MCAP message's `sequence` (32 bits: it wraps after 2^32 messages),
/// the bus frame id (which node sent it, e.g. `policy` or `supervisor`) is
/// the MCAP channel's metadata; a depth scan's compute time is not kept.
pub enum Mapped {
    /// A stereo pair: left and right `Image`s (`mono8`, one stamp).
    Pair(Image, Image),
    /// A depth scan (stereo or mono): a one-row depth image (`32FC1`, metres
    /// along the optical axis, NaN where nothing was seen: REP 118's depth
    /// image), not a `LaserScan`, whose evenly spaced angles and ranges along
    /// the ray a pinhole camera's columns do not have (converting would not
    /// give the bus's numbers back).
    Depth(Image),
    /// A setpoint: body-frame velocity and yaw rate.
    Twist(TwistStamped),
    /// The vehicle state: pose in `odom`, body-frame velocity.
    Odometry(Box<Odometry>),
    /// A goal position.
    Goal(PoseStamped),
    /// An event line.
    Log(Log),
    /// Flight-controller or camera health (`/diagnostics`).
    Diagnostics(DiagnosticArray),
}

fn header(stamp_ns: u64, frame: &str) -> Header {
    Header {
        stamp: Time::from_ns(stamp_ns),
        frame_id: frame.to_string(),
    }
}

fn gray(h: &Header, width: u32, height: u32, data: Vec<u8>) -> Image {
    Image {
        header: h.clone(),
        height,
        width,
        encoding: "mono8".into(),
        is_bigendian: 0,
        step: width,
        data,
    }
}

fn depth_image(stamp_ns: u64, depth: &[f32]) -> Image {
    Image {
        header: header(stamp_ns, LEFT_OPTICAL),
        height: 1,
        width: depth.len() as u32,
        encoding: "32FC1".into(),
        is_bigendian: 0,
        step: 4 * depth.len() as u32,
        data: depth.iter().flat_map(|d| d.to_le_bytes()).collect(),
    }
}

/// The ROS 2 form of a decoded bus message of `topic` stamped `stamp_ns`;
/// `None` for the topics ROS 2 has no type for (they stay in the bus encoding).
pub fn to_ros(topic: crate::Topic, stamp_ns: u64, bytes: &[u8]) -> Option<Mapped> {
    use crate::Topic as T;
    use crate::wire::decode;
    Some(match topic {
        T::CameraStereo => {
            let (_, p) = decode::<msg::StereoPair>(bytes).ok()?;
            let l = header(stamp_ns, LEFT_OPTICAL);
            let r = header(stamp_ns, RIGHT_OPTICAL);
            Mapped::Pair(
                gray(&l, p.width, p.height, p.left),
                gray(&r, p.width, p.height, p.right),
            )
        }
        T::DepthStereo | T::DepthMono => {
            let (_, d) = decode::<msg::DepthScan>(bytes).ok()?;
            Mapped::Depth(depth_image(stamp_ns, &d.depth))
        }
        T::CmdSetpoint | T::CmdPolicy | T::CmdExternal => {
            let (_, s) = decode::<msg::Setpoint>(bytes).ok()?;
            Mapped::Twist(TwistStamped {
                header: header(stamp_ns, BODY),
                twist: Twist {
                    linear: Vector3 {
                        x: f64::from(s.forward),
                        y: f64::from(s.left),
                        z: f64::from(s.up),
                    },
                    angular: Vector3 {
                        x: 0.0,
                        y: 0.0,
                        z: f64::from(s.yaw_rate),
                    },
                },
            })
        }
        T::State => {
            let (_, s) = decode::<msg::State>(bytes).ok()?;
            let [w, x, y, z] = s.attitude;
            Mapped::Odometry(Box::new(Odometry {
                header: header(stamp_ns, WORLD),
                child_frame_id: BODY.into(),
                pose: PoseWithCovariance {
                    pose: Pose {
                        position: Point {
                            x: s.position[0],
                            y: s.position[1],
                            z: s.position[2],
                        },
                        orientation: Quaternion { x, y, z, w },
                    },
                    covariance: Covariance([0.0; 36]),
                },
                twist: TwistWithCovariance {
                    twist: Twist {
                        linear: Vector3 {
                            x: f64::from(s.velocity[0]),
                            y: f64::from(s.velocity[1]),
                            z: f64::from(s.velocity[2]),
                        },
                        angular: Vector3::default(),
                    },
                    covariance: Covariance([0.0; 36]),
                },
            }))
        }
        T::Goal => {
            let (_, g) = decode::<msg::Goal>(bytes).ok()?;
            Mapped::Goal(PoseStamped {
                header: header(stamp_ns, WORLD),
                pose: Pose {
                    position: Point {
                        x: g.position[0],
                        y: g.position[1],
                        z: g.position[2],
                    },
                    orientation: Quaternion::IDENTITY,
                },
            })
        }
        T::Events => {
            let (h, e) = decode::<msg::Event>(bytes).ok()?;
            Mapped::Log(Log {
                stamp: Time::from_ns(stamp_ns),
                level: LOG_INFO,
                name: h.frame_id,
                msg: e.text,
                file: String::new(),
                function: String::new(),
                line: 0,
            })
        }
        T::FcStatus => {
            let (_, f) = decode::<msg::FcStatus>(bytes).ok()?;
            let [roll, pitch, yaw] = f.attitude;
            let [vf, vl, vu] = f.velocity;
            let state = match f.state {
                0 => "disarmed",
                1 => "armed",
                2 => "failsafe hover",
                3 => "failsafe landing",
                4 => "failsafe stopped",
                msg::FcStatus::LINK_DOWN => "link down",
                _ => "unknown state",
            };
            let level = match (f.state, f.faults) {
                (2..=4 | msg::FcStatus::LINK_DOWN, _) => 2,
                (_, 0) => 0,
                _ => 1,
            };
            Mapped::Diagnostics(diagnostics(
                stamp_ns,
                "fc",
                level,
                state,
                &[
                    ("state", f.state.to_string()),
                    ("faults", f.faults.to_string()),
                    ("roll_rad", f32_text(roll)),
                    ("pitch_rad", f32_text(pitch)),
                    ("yaw_rad", f32_text(yaw)),
                    ("velocity_forward", f32_text(vf)),
                    ("velocity_left", f32_text(vl)),
                    ("velocity_up", f32_text(vu)),
                    ("altitude_m", f32_text(f.altitude)),
                    ("battery_mv", f.battery_mv.to_string()),
                    ("setpoint_age_ms", f.setpoint_age_ms.to_string()),
                    ("link_errors", f.link_errors.to_string()),
                    ("reconnects", f.reconnects.to_string()),
                ],
            ))
        }
        T::CameraHealth => {
            let (_, c) = decode::<msg::CameraHealth>(bytes).ok()?;
            let streaming = c.streaming == 1;
            Mapped::Diagnostics(diagnostics(
                stamp_ns,
                "camera",
                if streaming { 0 } else { 2 },
                if streaming {
                    "streaming"
                } else {
                    "camera lost"
                },
                &[
                    ("streaming", c.streaming.to_string()),
                    ("fps", f32_text(c.fps)),
                    ("skew_ms", f32_text(c.skew_ms)),
                    ("max_skew_ms", f32_text(c.max_skew_ms)),
                    ("latency_ms", f32_text(c.latency_ms)),
                    ("pairs", c.pairs.to_string()),
                    ("dropped", c.dropped.to_string()),
                    ("restarts", c.restarts.to_string()),
                ],
            ))
        }
        T::Weights | T::Tracks | T::CmdArm => return None,
    })
}

/// A float as diagnostics text that parses back to the same bits: the
/// shortest decimal that round-trips, or `nan:0x...` with a NaN's bits (its
/// sign and payload; `NaN` alone would not keep them).
fn f32_text(v: f32) -> String {
    if v.is_nan() {
        format!("nan:{:#010x}", v.to_bits())
    } else {
        v.to_string()
    }
}

/// The inverse of [`f32_text`].
fn parse_f32(s: &str) -> Option<f32> {
    match s.strip_prefix("nan:0x") {
        Some(hex) => u32::from_str_radix(hex, 16).ok().map(f32::from_bits),
        None => s.parse().ok(),
    }
}

fn diagnostics(
    stamp_ns: u64,
    name: &str,
    level: u8,
    message: &str,
    values: &[(&str, String)],
) -> DiagnosticArray {
    DiagnosticArray {
        header: header(stamp_ns, ""),
        status: vec![DiagnosticStatus {
            level,
            name: name.into(),
            message: message.into(),
            hardware_id: String::new(),
            values: values
                .iter()
                .map(|(k, v)| KeyValue {
                    key: (*k).into(),
                    value: v.clone(),
                })
                .collect(),
        }],
    }
}

/// The float `key` in the status of `name` ([`f32_text`]).
fn diag_f32(d: &DiagnosticArray, name: &str, key: &str) -> Result<f32, CdrError> {
    diag_value::<String>(d, name, key).and_then(|t| {
        parse_f32(&t).ok_or_else(|| unfit(&format!("`{key}` of `{name}` is not a number: {t}")))
    })
}

/// The value of `key` in the status of `name`, parsed.
fn diag_value<T: std::str::FromStr>(
    d: &DiagnosticArray,
    name: &str,
    key: &str,
) -> Result<T, CdrError> {
    d.status
        .iter()
        .find(|s| s.name == name)
        .and_then(|s| s.values.iter().find(|v| v.key == key))
        .and_then(|v| v.value.parse().ok())
        .ok_or_else(|| unfit(&format!("diagnostics of `{name}` lack a readable `{key}`")))
}

/// Whether `topic` is written as ROS 2 messages.
pub fn has_ros_type(topic: crate::Topic) -> bool {
    use crate::Topic as T;
    !matches!(topic, T::Weights | T::Tracks | T::CmdArm)
}

/// Why a ROS 2 message does not give a bus message back.
fn unfit(what: &str) -> CdrError {
    CdrError::Body(what.to_string())
}

fn as_f32(v: f64) -> f32 {
    v as f32
}

/// The bus message (encoded, with `header`) of a ROS 2 message read from a
/// channel of `topic`; a stereo pair's halves are joined by [`PairJoin`].
pub fn from_ros(
    topic: crate::Topic,
    header: &crate::wire::Header,
    cdr: &[u8],
) -> Result<Vec<u8>, CdrError> {
    use crate::Topic as T;
    use crate::wire::encode as bus;
    Ok(match topic {
        T::DepthStereo | T::DepthMono => {
            let im: Image = decode(cdr)?;
            if im.encoding != "32FC1" || im.is_bigendian != 0 || !im.data.len().is_multiple_of(4) {
                return Err(unfit("a depth scan is a little-endian 32FC1 image"));
            }
            let depth = im
                .data
                .chunks_exact(4)
                .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                .collect();
            bus(
                header,
                &msg::DepthScan {
                    compute_ns: 0,
                    depth,
                },
            )
        }
        T::CmdSetpoint | T::CmdPolicy | T::CmdExternal => {
            let t: TwistStamped = decode(cdr)?;
            bus(
                header,
                &msg::Setpoint {
                    forward: as_f32(t.twist.linear.x),
                    left: as_f32(t.twist.linear.y),
                    up: as_f32(t.twist.linear.z),
                    yaw_rate: as_f32(t.twist.angular.z),
                },
            )
        }
        T::State => {
            let o: Odometry = decode(cdr)?;
            let (p, q, v) = (
                o.pose.pose.position,
                o.pose.pose.orientation,
                o.twist.twist.linear,
            );
            bus(
                header,
                &msg::State {
                    position: [p.x, p.y, p.z],
                    attitude: [q.w, q.x, q.y, q.z],
                    velocity: [as_f32(v.x), as_f32(v.y), as_f32(v.z)],
                },
            )
        }
        T::Goal => {
            let g: PoseStamped = decode(cdr)?;
            let p = g.pose.position;
            bus(
                header,
                &msg::Goal {
                    position: [p.x, p.y, p.z],
                },
            )
        }
        T::Events => {
            let l: Log = decode(cdr)?;
            bus(header, &msg::Event { text: l.msg })
        }
        T::FcStatus => {
            let d: DiagnosticArray = decode(cdr)?;
            let v = |k| diag_f32(&d, "fc", k);
            bus(
                header,
                &msg::FcStatus {
                    state: diag_value(&d, "fc", "state")?,
                    faults: diag_value(&d, "fc", "faults")?,
                    attitude: [v("roll_rad")?, v("pitch_rad")?, v("yaw_rad")?],
                    velocity: [
                        v("velocity_forward")?,
                        v("velocity_left")?,
                        v("velocity_up")?,
                    ],
                    altitude: v("altitude_m")?,
                    battery_mv: diag_value(&d, "fc", "battery_mv")?,
                    setpoint_age_ms: diag_value(&d, "fc", "setpoint_age_ms")?,
                    link_errors: diag_value(&d, "fc", "link_errors")?,
                    reconnects: diag_value(&d, "fc", "reconnects")?,
                },
            )
        }
        T::CameraHealth => {
            let d: DiagnosticArray = decode(cdr)?;
            let v = |k| diag_f32(&d, "camera", k);
            bus(
                header,
                &msg::CameraHealth {
                    streaming: diag_value(&d, "camera", "streaming")?,
                    fps: v("fps")?,
                    skew_ms: v("skew_ms")?,
                    max_skew_ms: v("max_skew_ms")?,
                    latency_ms: v("latency_ms")?,
                    pairs: diag_value(&d, "camera", "pairs")?,
                    dropped: diag_value(&d, "camera", "dropped")?,
                    restarts: diag_value(&d, "camera", "restarts")?,
                },
            )
        }
        T::CameraStereo => return Err(unfit("a stereo pair is joined from two images")),
        T::Weights | T::Tracks | T::CmdArm => {
            return Err(unfit("this topic has no ROS 2 type"));
        }
    })
}

/// Joins the left and right `Image`s of a stereo pair (the same sequence
/// number and stamp) back into one bus message.
#[derive(Default)]
pub struct PairJoin {
    waiting: Option<(bool, u64, u64, Image)>,
}

impl PairJoin {
    /// Takes one half (`right` tells which); returns the pair once both halves
    /// of a frame are in. A half whose other half never comes is dropped when
    /// the next frame's half arrives.
    pub fn push(
        &mut self,
        right: bool,
        header: &crate::wire::Header,
        cdr: &[u8],
    ) -> Result<Option<Vec<u8>>, CdrError> {
        let im: Image = decode(cdr)?;
        if im.encoding != "mono8" || im.data.len() != im.width as usize * im.height as usize {
            return Err(unfit("a stereo half is a packed mono8 image"));
        }
        match self.waiting.take() {
            Some((other_right, seq, stamp, other))
                if other_right != right && seq == header.seq && stamp == header.stamp_ns =>
            {
                let (l, r) = if right { (other, im) } else { (im, other) };
                if (l.width, l.height) != (r.width, r.height) {
                    return Err(unfit("the halves of a stereo pair differ in size"));
                }
                Ok(Some(crate::wire::encode(
                    header,
                    &msg::StereoPair {
                        width: l.width,
                        height: l.height,
                        left: l.data,
                        right: r.data,
                    },
                )))
            }
            _ => {
                self.waiting = Some((right, header.seq, header.stamp_ns, im));
                Ok(None)
            }
        }
    }
}

/// A calibrated rectified rig, for `CameraInfo` and the cameras' transforms.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RigInfo {
    /// Image columns.
    pub width: u32,
    /// Image rows.
    pub height: u32,
    /// Focal length, x (px).
    pub fx: f64,
    /// Focal length, y (px).
    pub fy: f64,
    /// Principal point, x (px).
    pub cx: f64,
    /// Principal point, y (px).
    pub cy: f64,
    /// Baseline (m, right camera to the right of the left).
    pub baseline_m: f64,
}

impl RigInfo {
    /// The `CameraInfo` of the left (`right == false`) or right camera of the
    /// rectified pair stamped `stamp_ns`.
    pub fn camera_info(&self, right: bool, stamp_ns: u64) -> CameraInfo {
        let tx = if right {
            -self.fx * self.baseline_m
        } else {
            0.0
        };
        CameraInfo {
            header: header(stamp_ns, if right { RIGHT_OPTICAL } else { LEFT_OPTICAL }),
            height: self.height,
            width: self.width,
            distortion_model: "plumb_bob".into(),
            d: vec![0.0; 5],
            k: [self.fx, 0.0, self.cx, 0.0, self.fy, self.cy, 0.0, 0.0, 1.0],
            r: [1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0],
            p: [
                self.fx, 0.0, self.cx, tx, 0.0, self.fy, self.cy, 0.0, 0.0, 0.0, 1.0, 0.0,
            ],
            binning_x: 0,
            binning_y: 0,
            roi: RegionOfInterest::default(),
        }
    }

    /// The cameras in the body frame (`/tf_static`): optical frames (z
    /// forward, x right, y down) looking along the body's x, the pair centred
    /// on the body origin, the right camera `baseline` to the right.
    pub fn static_transforms(&self, stamp_ns: u64) -> TfMessage {
        // Body (x forward, y left, z up) to optical: x_o = -y_b, y_o = -z_b,
        // z_o = x_b; as a quaternion (x, y, z, w) = (-1/2, 1/2, -1/2, 1/2).
        let rotation = Quaternion {
            x: -0.5,
            y: 0.5,
            z: -0.5,
            w: 0.5,
        };
        let half = 0.5 * self.baseline_m;
        let cam = |child: &str, y: f64| TransformStamped {
            header: header(stamp_ns, BODY),
            child_frame_id: child.into(),
            transform: Transform {
                translation: Vector3 { x: 0.0, y, z: 0.0 },
                rotation,
            },
        };
        TfMessage {
            transforms: vec![cam(LEFT_OPTICAL, half), cam(RIGHT_OPTICAL, -half)],
        }
    }
}

/// One ROS 2 message a bus message becomes (see [`outputs`]).
#[derive(Debug, Clone, PartialEq)]
pub struct Output {
    /// Its topic: relative to the robot's namespace (`camera/left/image_raw`),
    /// or absolute where ROS 2 keeps it global (`/tf`, `/rosout`, `/diagnostics`).
    pub topic: &'static str,
    /// Its type.
    pub ros_type: RosType,
    /// The QoS a publisher offers it with (sensor data for images and scans).
    pub qos: crate::rmw::Qos,
    /// `left` or `right` for a stereo pair's halves.
    pub part: Option<&'static str>,
    /// Derived from the message rather than carrying it (camera info,
    /// transforms): a replay skips it.
    pub derived: bool,
    /// The CDR bytes.
    pub cdr: Vec<u8>,
}

/// The ROS 2 messages of a bus message of `topic` stamped `stamp_ns` (the
/// images' `CameraInfo` from `rig` when its size is the images'): what a
/// recording writes and the `ros2` bridge publishes. `None` when the topic
/// has no ROS 2 type or the body does not decode.
pub fn outputs(
    topic: crate::Topic,
    stamp_ns: u64,
    bytes: &[u8],
    rig: Option<&RigInfo>,
) -> Option<Vec<Output>> {
    use crate::Topic as T;
    use crate::rmw::Qos;
    let out = |topic, ros_type, qos, part, derived, cdr| Output {
        topic,
        ros_type,
        qos,
        part,
        derived,
        cdr,
    };
    Some(match to_ros(topic, stamp_ns, bytes)? {
        Mapped::Pair(l, r) => {
            let mut v = vec![
                out(
                    "camera/left/image_raw",
                    RosType::Image,
                    Qos::SENSOR_DATA,
                    Some("left"),
                    false,
                    encode(&l),
                ),
                out(
                    "camera/right/image_raw",
                    RosType::Image,
                    Qos::SENSOR_DATA,
                    Some("right"),
                    false,
                    encode(&r),
                ),
            ];
            if let Some(rig) = rig.filter(|g| (g.width, g.height) == (l.width, l.height)) {
                for (right, t) in [
                    (false, "camera/left/camera_info"),
                    (true, "camera/right/camera_info"),
                ] {
                    let info = rig.camera_info(right, stamp_ns);
                    v.push(out(
                        t,
                        RosType::CameraInfo,
                        Qos::SENSOR_DATA,
                        None,
                        true,
                        encode(&info),
                    ));
                }
            }
            v
        }
        Mapped::Depth(im) => {
            let t = if topic == T::DepthMono {
                "depth/mono"
            } else {
                "depth/stereo"
            };
            vec![out(
                t,
                RosType::Image,
                Qos::SENSOR_DATA,
                None,
                false,
                encode(&im),
            )]
        }
        Mapped::Twist(tw) => {
            let t = match topic {
                T::CmdPolicy => "cmd/policy",
                T::CmdExternal => "cmd/external",
                _ => "cmd/setpoint",
            };
            vec![out(
                t,
                RosType::TwistStamped,
                Qos::DEFAULT,
                None,
                false,
                encode(&tw),
            )]
        }
        Mapped::Odometry(o) => vec![
            out(
                "odom",
                RosType::Odometry,
                Qos::DEFAULT,
                None,
                false,
                encode(o.as_ref()),
            ),
            out(
                "/tf",
                RosType::TfMessage,
                Qos::DEFAULT,
                None,
                true,
                encode(&body_transform(&o)),
            ),
        ],
        Mapped::Goal(g) => vec![out(
            "goal_pose",
            RosType::PoseStamped,
            Qos::DEFAULT,
            None,
            false,
            encode(&g),
        )],
        Mapped::Log(l) => vec![out(
            "/rosout",
            RosType::Log,
            Qos::DEFAULT,
            None,
            false,
            encode(&l),
        )],
        Mapped::Diagnostics(d) => vec![out(
            "/diagnostics",
            RosType::DiagnosticArray,
            Qos::DEFAULT,
            None,
            false,
            encode(&d),
        )],
    })
}

/// The body in the world (`/tf`), from an odometry message.
pub fn body_transform(o: &Odometry) -> TfMessage {
    let p = o.pose.pose.position;
    TfMessage {
        transforms: vec![TransformStamped {
            header: o.header.clone(),
            child_frame_id: o.child_frame_id.clone(),
            transform: Transform {
                translation: Vector3 {
                    x: p.x,
                    y: p.y,
                    z: p.z,
                },
                rotation: o.pose.pose.orientation,
            },
        }],
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Topic;
    use crate::wire::{Header as BusHeader, encode as bus};

    fn h(frame: &str) -> BusHeader {
        BusHeader {
            seq: 41,
            stamp_ns: 1_700_000_000_123_456_789,
            frame_id: frame.into(),
        }
    }

    #[test]
    fn cdr_layout_is_ros2s() {
        // builtin_interfaces/Time{1, 2} then frame_id "ab": CDR_LE header,
        // i32, u32, string length 3 (with its NUL), bytes, NUL.
        let b = encode(&header(1_000_000_002, "ab"));
        assert_eq!(
            b,
            [
                0, 1, 0, 0, 1, 0, 0, 0, 2, 0, 0, 0, 3, 0, 0, 0, b'a', b'b', 0
            ]
        );
        // A float64 after a 4-byte-aligned end is padded to 8 (from the body's start).
        let v = encode(&TwistStamped {
            header: header(0, "a"),
            twist: Twist::default(),
        });
        // header: 8 (time) + 4 (len) + 2 ("a\0") = 14, padded to 16, then 6 f64.
        assert_eq!(v.len(), 4 + 16 + 48);
        let back: TwistStamped = decode(&v).unwrap();
        assert_eq!(back.header.frame_id, "a");
    }

    #[test]
    fn every_mapped_topic_gives_the_bus_bytes_back() {
        let msgs: Vec<(Topic, BusHeader, Vec<u8>)> = vec![
            (
                Topic::DepthStereo,
                h("stereo"),
                bus(
                    &h("stereo"),
                    &msg::DepthScan {
                        compute_ns: 0,
                        depth: vec![1.5, f32::NAN, 0.25, 80.0],
                    },
                ),
            ),
            (
                Topic::CmdSetpoint,
                h("supervisor"),
                bus(
                    &h("supervisor"),
                    &msg::Setpoint {
                        forward: 0.1,
                        left: -0.3,
                        up: 1e-7,
                        yaw_rate: -1.5,
                    },
                ),
            ),
            (
                Topic::State,
                h("fc"),
                bus(
                    &h("fc"),
                    &msg::State {
                        position: [1.0 / 3.0, -2.0, 1e-9],
                        attitude: [0.5f64.sqrt(), 0.0, 0.0, 0.5f64.sqrt()],
                        velocity: [0.1, 0.2, -0.3],
                    },
                ),
            ),
            (
                Topic::Goal,
                h("ground"),
                bus(
                    &h("ground"),
                    &msg::Goal {
                        position: [10.0, -3.5, 1.25],
                    },
                ),
            ),
            (
                Topic::Events,
                h("policy"),
                bus(
                    &h("policy"),
                    &msg::Event {
                        text: "switch to mono — ü".into(),
                    },
                ),
            ),
        ];
        let mut msgs = msgs;
        msgs.push((
            Topic::FcStatus,
            h("fc"),
            bus(
                &h("fc"),
                &msg::FcStatus {
                    state: 2,
                    faults: 0x21,
                    attitude: [0.1, -1.0 / 3.0, f32::MIN_POSITIVE],
                    velocity: [1e-7, -2.5, 0.0],
                    altitude: 12.345_679,
                    battery_mv: 11_900,
                    setpoint_age_ms: 1_234,
                    link_errors: 7,
                    reconnects: 1,
                },
            ),
        ));
        msgs.push((
            Topic::CameraHealth,
            h("camera"),
            bus(
                &h("camera"),
                &msg::CameraHealth {
                    streaming: 1,
                    // A negative NaN with a payload (x86's 0.0 / 0.0 is negative).
                    fps: f32::from_bits(0xffc0_0001),
                    skew_ms: -0.333,
                    max_skew_ms: 4.0,
                    latency_ms: 17.25,
                    pairs: u64::MAX,
                    dropped: 3,
                    restarts: 2,
                },
            ),
        ));
        for (topic, hd, bytes) in msgs {
            let ros = to_ros(topic, hd.stamp_ns, &bytes).expect("mapped");
            let cdr = match &ros {
                Mapped::Depth(m) => encode(m),
                Mapped::Twist(m) => encode(m),
                Mapped::Odometry(m) => encode(m.as_ref()),
                Mapped::Goal(m) => encode(m),
                Mapped::Log(m) => encode(m),
                Mapped::Diagnostics(m) => encode(m),
                Mapped::Pair(..) => unreachable!(),
            };
            let back = from_ros(topic, &hd, &cdr).unwrap();
            // NaN is compared by its bits, like everything else.
            assert_eq!(back, bytes, "{topic:?}");
        }
    }

    #[test]
    fn a_stereo_pair_is_rejoined_from_its_halves_in_either_order() {
        let pair = msg::StereoPair {
            width: 3,
            height: 2,
            left: vec![1, 2, 3, 4, 5, 6],
            right: vec![9, 8, 7, 6, 5, 4],
        };
        let hd = h("camera");
        let bytes = bus(&hd, &pair);
        let Some(Mapped::Pair(l, r)) = to_ros(Topic::CameraStereo, hd.stamp_ns, &bytes) else {
            panic!("a pair");
        };
        assert_eq!(
            (l.encoding.as_str(), l.step, l.header.stamp),
            ("mono8", 3, r.header.stamp)
        );
        for order in [[false, true], [true, false]] {
            let mut j = PairJoin::default();
            let half = |right: bool| encode(if right { &r } else { &l });
            assert!(j.push(order[0], &hd, &half(order[0])).unwrap().is_none());
            assert_eq!(
                j.push(order[1], &hd, &half(order[1])).unwrap(),
                Some(bytes.clone())
            );
        }
        // A half of another frame does not complete it.
        let mut j = PairJoin::default();
        j.push(false, &hd, &encode(&l)).unwrap();
        let other = BusHeader {
            seq: 42,
            ..hd.clone()
        };
        assert!(j.push(true, &other, &encode(&r)).unwrap().is_none());
    }

    #[test]
    fn bad_cdr_is_refused_by_name() {
        assert!(matches!(decode::<Log>(&[0, 1]), Err(CdrError::Short(2))));
        assert!(matches!(
            decode::<Log>(&[0, 7, 0, 0]),
            Err(CdrError::Encapsulation(7))
        ));
        let mut b = encode(&Log {
            stamp: Time::default(),
            level: 20,
            name: "n".into(),
            msg: "m".into(),
            file: String::new(),
            function: String::new(),
            line: 0,
        });
        b.truncate(b.len() - 3);
        assert!(matches!(decode::<Log>(&b), Err(CdrError::Body(_))));
        // A string length far past the end is an error, not an allocation.
        let mut huge = vec![0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0];
        huge.extend_from_slice(&u32::MAX.to_le_bytes());
        assert!(decode::<Log>(&huge).is_err());
    }

    #[test]
    fn camera_info_holds_the_rig() {
        let rig = RigInfo {
            width: 640,
            height: 480,
            fx: 500.0,
            fy: 501.0,
            cx: 320.5,
            cy: 240.5,
            baseline_m: 0.12,
        };
        let r = rig.camera_info(true, 5);
        assert_eq!(r.k, [500.0, 0.0, 320.5, 0.0, 501.0, 240.5, 0.0, 0.0, 1.0]);
        assert_eq!(r.p[3], -60.0);
        assert_eq!(rig.camera_info(false, 5).p[3], 0.0);
        let tf = rig.static_transforms(0);
        assert_eq!(tf.transforms[1].transform.translation.y, -0.06);
        let back: CameraInfo = decode(&encode(&r)).unwrap();
        assert_eq!(back, r);
    }
}
