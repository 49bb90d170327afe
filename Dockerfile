# recon: every binary, static, in a distroless image with no shell, run as
# a non-root user. Build: make image (needs a Docker engine).
FROM golang:1.26 AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
# Static binaries with the AVX2/AVX-512 kernels (they fall back to portable
# code on CPUs without them).
RUN CGO_ENABLED=0 GOEXPERIMENT=simd go build -trimpath -ldflags="-s -w" -o /out/ \
        ./cmd/coordinator ./cmd/trainer ./cmd/scorer ./cmd/loadgen ./cmd/devkafka

FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /out/ /recon/
USER 65532:65532
# The coordinator's store and a scorer's cache are volumes; the root
# filesystem can be read-only.
ENTRYPOINT ["/recon/coordinator"]
