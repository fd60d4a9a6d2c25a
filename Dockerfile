# Operator image for those with a container engine: the same image tools/image.sh assembles
# without one (tests/image.rs runs that one): a static binary built with the gnu target and a
# static C runtime, the CA roots, a non-root user 65532, entrypoint `/sparkjobrun-operator run`.
#
#   docker build -t <your-registry>/sparkjobrun-operator:0.1.0 .
#
# Then push it to a registry your cluster can pull from and point the chart's image.repository
# at it (charts/sparkjobrun-operator/values.yaml). Build for linux/amd64.

FROM rust:1-bookworm AS build
WORKDIR /src
COPY . .
RUN RUSTFLAGS="-C target-feature=+crt-static" cargo build --locked --release \
        --target x86_64-unknown-linux-gnu --bin sparkjobrun-operator \
    && cp target/x86_64-unknown-linux-gnu/release/sparkjobrun-operator /sparkjobrun-operator \
    && mkdir -p /rootfs/etc/ssl/certs /rootfs/tmp \
    && cp /etc/ssl/certs/ca-certificates.crt /rootfs/etc/ssl/certs/ \
    && printf 'nonroot:x:65532:65532:nonroot:/nonexistent:/sbin/nologin\n' >/rootfs/etc/passwd \
    && printf 'nonroot:x:65532:\n' >/rootfs/etc/group \
    && chmod 1777 /rootfs/tmp

# No shell, no package manager: the binary is static; its TLS roots for the service are compiled
# in (webpki roots), the in-cluster CA comes with the ServiceAccount.
FROM scratch
COPY --from=build /rootfs/ /
COPY --from=build /sparkjobrun-operator /sparkjobrun-operator
ENV SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt
# The chart's podSecurityContext uses the same ids.
USER 65532:65532
EXPOSE 8080
ENTRYPOINT ["/sparkjobrun-operator"]
CMD ["run"]
