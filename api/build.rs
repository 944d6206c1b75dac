fn main() {
    println!("cargo:rerun-if-changed=proto");
    tonic_prost_build::configure()
        .compile_protos(&["proto/skybridge/control/v1/control.proto"], &["proto"])
        .unwrap_or_else(|e| {
            panic!("compiling the control protocol (is protoc installed? apt-get install protobuf-compiler): {e}")
        });
}
