// Writes deploy/demo/mlp.safetensors and deploy/demo/calibration.safetensors
// into the directory given as the only argument (default: the current one).
// The output is the same on every run; demo_model_test checks the committed
// files against it.
#include <iostream>
#include <string>

#include "core/model/file_io.h"
#include "core/model/safetensors.h"
#include "deploy/demo/demo_model.h"

int main(int argc, char** argv) {
  if (argc > 2) {
    std::cerr << "usage: make_demo_model [output_directory]\n";
    return 2;
  }
  const std::string dir = argc == 2 ? argv[1] : ".";
  namespace model = squeeze::core::model;
  namespace demo = squeeze::deploy::demo;
  for (const auto& [name, file] :
       {std::pair{"mlp.safetensors", demo::MakeDemoModel()},
        std::pair{"calibration.safetensors", demo::MakeDemoCalibration()}}) {
    const std::string path = dir + "/" + name;
    const absl::Status written =
        model::WriteFileAtomically(path, model::SerializeSafetensors(file));
    if (!written.ok()) {
      std::cerr << "make_demo_model: " << written << "\n";
      return 1;
    }
    std::cout << "wrote " << path << "\n";
  }
  return 0;
}
