# squeezed and squeeze-worker on Debian 12, built by the project's own scripts.
FROM debian:12 AS build
WORKDIR /src
COPY . .
RUN ./scripts/install-deps.sh && CMAKE_BUILD_TYPE=Release ./scripts/build.sh

FROM debian:12
RUN apt-get update -qq && apt-get install -y -qq --no-install-recommends \
      libgrpc++1.51 libprotobuf32 libsqlite3-0 libprometheus-cpp-core1.0 \
      libprometheus-cpp-pull1.0 libssl3 ca-certificates \
    && rm -rf /var/lib/apt/lists/*
COPY --from=build /src/build/bin/squeezed /src/build/bin/squeeze-worker /src/build/bin/squeeze /usr/local/bin/
COPY deploy/devices /usr/local/share/squeeze/devices
VOLUME /var/lib/squeeze
EXPOSE 7400 7401 7402
ENTRYPOINT ["/usr/local/bin/squeezed", "--data_dir=/var/lib/squeeze", "--listen=0.0.0.0:7400", \
            "--metrics_listen=0.0.0.0:7401", "--worker_listen=0.0.0.0:7402", \
            "--devices_dir=/usr/local/share/squeeze/devices"]
