fn main() {
    print!(
        "{}",
        sparkjobrun_operator::crd::crd_yaml().expect("serialise CRD")
    );
}
