//! Rig files written by OpenCV itself read back exactly.

use calib::Rig;
use std::path::Path;

#[test]
fn reads_a_rig_file_written_by_opencv_filestorage() {
    // tests/data/opencv_written.yaml was written by cv2.FileStorage (OpenCV 4.14,
    // opencv-python-headless) from a rig this crate wrote; OpenCV wraps long `data`
    // lists over several lines and prints 17 significant digits.
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/opencv_written.yaml");
    let rig = Rig::load_opencv(&path).unwrap();
    assert_eq!((rig.width, rig.height), (640, 480));
    assert_eq!(rig.left.kind(), calib::LensKind::PlumbBob);
    assert_eq!(rig.left.distortion(), [-0.28, 0.07, 0.001, -0.0005, 0.0]);
    assert_eq!(
        [rig.left.fx(), rig.left.cx(), rig.left.cy()],
        [400.0, 319.5, 239.5]
    );
    assert!((rig.baseline() - 0.12).abs() < 1e-15);
    let rect = rig.rect.unwrap();
    assert_eq!(rect.p2[0][3], -48.0);
    // And what this crate writes from it reads back identically.
    assert_eq!(
        Rig::from_opencv_yaml(&rig.to_opencv_yaml(), "mem").unwrap(),
        rig
    );
}
