// The kubelet's gRPC APIs, generated from proto/k8s.io/...:
//   ::v1beta1  the device-plugin API (Registration, DevicePlugin)
//   ::v1       the PodResources API (PodResourcesLister)
// Both packages sit at the global namespace, as the kubelet names them; in
// namespace tokenmem write ::v1 (plain v1 is tokenmem's control protocol).
#pragma once

#include "k8s.io/kubelet/pkg/apis/deviceplugin/v1beta1/api.grpc.pb.h"
#include "k8s.io/kubelet/pkg/apis/deviceplugin/v1beta1/api.pb.h"
#include "k8s.io/kubelet/pkg/apis/podresources/v1/api.grpc.pb.h"
#include "k8s.io/kubelet/pkg/apis/podresources/v1/api.pb.h"

namespace tokenmem::device_plugin {

// The API version sent in RegisterRequest.
inline constexpr char kDevicePluginApiVersion[] = "v1beta1";

}  // namespace tokenmem::device_plugin
