# The same image `make image` builds without Docker (internal/tools/image):
# a static weir on an empty base, the non-root user weir (65532), no shell.
#
#   docker build --build-arg VERSION=$(git describe --tags --always --dirty) \
#     -t weir:$(git describe --tags --always --dirty) .
FROM golang:1.26 AS build
ARG VERSION=devel
ARG COMMIT=
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
RUN CGO_ENABLED=0 go build -trimpath \
      -ldflags "-X github.com/weirstream/weir/internal/cli.version=${VERSION} -X github.com/weirstream/weir/internal/cli.commit=${COMMIT}" \
      -o /out/usr/local/bin/weir ./cmd/weir \
 && mkdir -p /out/etc /out/tmp /out/data /out/etc/ssl/certs \
 && printf 'root:x:0:0:root:/root:/sbin/nologin\nweir:x:65532:65532:weir:/data:/sbin/nologin\n' > /out/etc/passwd \
 && printf 'root:x:0:\nweir:x:65532:\n' > /out/etc/group \
 && cp /etc/ssl/certs/ca-certificates.crt /out/etc/ssl/certs/ \
 && chmod 1777 /out/tmp && chown 65532:65532 /out/data

FROM scratch
ARG VERSION=devel
COPY --from=build /out/ /
ENV PATH=/usr/local/bin HOME=/data TMPDIR=/tmp
LABEL org.opencontainers.image.title=weir \
      org.opencontainers.image.version=${VERSION} \
      org.opencontainers.image.source=https://github.com/weirstream/weir \
      org.opencontainers.image.licenses=Apache-2.0
USER 65532:65532
WORKDIR /data
VOLUME /data
EXPOSE 6123 7000 8080
ENTRYPOINT ["/usr/local/bin/weir"]
