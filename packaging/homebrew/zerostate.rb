# Homebrew formula: builds ZeroState from a source release tarball.
class Zerostate < Formula
  desc "Self-hosted AI-agent marketplace and orchestrator in one binary"
  homepage "https://github.com/zerostate/zerostate"
  url "https://github.com/zerostate/zerostate/archive/refs/tags/v0.1.0.tar.gz"
  # Fill in with `shasum -a 256` of the release tarball when cutting a release.
  sha256 "0000000000000000000000000000000000000000000000000000000000000000"
  license "Apache-2.0"

  depends_on "rust" => :build

  def install
    system "cargo", "install", *std_cargo_args
    (etc/"zerostate").install "config/zerostate.toml"
  end

  service do
    run [opt_bin/"zerostate", "serve", "--config", etc/"zerostate/zerostate.toml",
         "--data-dir", var/"zerostate"]
    keep_alive true
    log_path var/"log/zerostate.log"
    error_log_path var/"log/zerostate.log"
  end

  test do
    assert_match version.to_s, shell_output("#{bin}/zerostate --version")
    port = free_port
    pid = fork do
      exec bin/"zerostate", "serve", "--listen", "127.0.0.1:#{port}", "--data-dir", testpath/"data"
    end
    sleep 3
    assert_match "\"status\":\"ok\"", shell_output("curl -s http://127.0.0.1:#{port}/health")
  ensure
    Process.kill("TERM", pid) if pid
  end
end
