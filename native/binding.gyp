{
  "targets": [
    {
      "target_name": "onedp_native",
      "sources": ["src/addon.cc"],
      "cflags!": ["-O2"],
      "cflags_cc!": ["-O2", "-std=gnu++14", "-std=gnu++17"],
      "cflags_cc": ["-O3", "-std=gnu++17", "-march=native", "-ffp-contract=fast", "-fno-math-errno"],
      "xcode_settings": { "OTHER_CPLUSPLUSFLAGS": ["-O3", "-std=gnu++17", "-march=native"] }
    }
  ]
}
