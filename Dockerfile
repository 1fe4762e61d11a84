# Build and unit-test stage: the same dependency script as CI and the README.
FROM debian:bookworm AS build
WORKDIR /src
COPY scripts/install-deps.sh scripts/install-deps.sh
RUN scripts/install-deps.sh
COPY . .
RUN cmake --preset release -DVIGIL_BUILD_LOAD_TESTS=OFF \
 && cmake --build --preset release -j "$(nproc)" \
 && ctest --preset release -L unit

# Runtime stage: the binary, its shared libraries and the example rules.
FROM debian:bookworm-slim
COPY scripts/install-deps.sh /usr/local/lib/vigil/install-deps.sh
RUN /usr/local/lib/vigil/install-deps.sh --runtime && rm -rf /var/lib/apt/lists/*
COPY --from=build /src/build/release/src/app/vigil /usr/local/bin/vigil
COPY patterns /usr/share/vigil/patterns
COPY config/vigil.example.yaml /etc/vigil/vigil.yaml
EXPOSE 8080
ENTRYPOINT ["vigil"]
CMD ["serve", "--listen", "0.0.0.0:8080", "--data-dir", "/var/lib/vigil", "--patterns-dir", "/usr/share/vigil/patterns"]
