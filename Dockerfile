# Operator image: a static (musl) binary in an empty image, run as a non-root user.
#
#   docker build -t <your-registry>/sparkjobrun-operator:0.1.0 .
#
# Then push it to a registry your cluster can pull from and point the chart's image.repository
# at it (charts/sparkjobrun-operator/values.yaml). Build for linux/amd64.

FROM rust:1-bookworm AS build
# musl-gcc compiles ring's C and assembly parts for the musl target.
RUN apt-get update \
    && apt-get install -y --no-install-recommends musl-tools \
    && rm -rf /var/lib/apt/lists/* \
    && rustup target add x86_64-unknown-linux-musl
WORKDIR /src
COPY . .
RUN cargo build --locked --release --target x86_64-unknown-linux-musl --bin sparkjobrun-operator \
    && cp target/x86_64-unknown-linux-musl/release/sparkjobrun-operator /sparkjobrun-operator

# No shell, no package manager, no libc: the binary is static, its TLS roots are compiled in
# (webpki roots for the service, the in-cluster CA for the API server).
FROM scratch
COPY --from=build /sparkjobrun-operator /sparkjobrun-operator
# The chart's podSecurityContext uses the same ids.
USER 65532:65532
EXPOSE 8080
ENTRYPOINT ["/sparkjobrun-operator"]
CMD ["run"]
