defmodule WsPort.PackageTest do
  @moduledoc """
  What a Hex package of ws_port would hold (publishing is not possible
  here): the files `mix hex.build` takes from mix.exs's `package[:files]`
  (each entry a wildcard, directories taken whole, hidden files included),
  checked for what must be in (the C sources and Makefile, the Erlang and
  Elixir sources, README, LICENSE, CHANGELOG) and what must stay out (built
  binaries, _build, c_build, the test peers' node_modules); rebar3's Hex
  metadata in ws_port.app.src says the same; and the files alone build the
  port program (with the Makefile's fallback when pkg-config knows nothing).
  """
  use ExUnit.Case, async: true

  @root Path.expand("..", __DIR__)

  # mix hex.build's expansion of package[:files], relative to the project
  defp package_files(entries) do
    entries
    |> Enum.map(&Path.join(@root, &1))
    |> Enum.flat_map(&Path.wildcard(&1, match_dot: true))
    |> Enum.flat_map(&dir_files/1)
    |> Enum.uniq()
    |> Enum.filter(&File.regular?/1)
    |> Enum.map(&Path.relative_to(&1, @root))
    |> Enum.sort()
  end

  defp dir_files(path) do
    case File.lstat!(path) do
      %File.Stat{type: :directory} ->
        [path | path |> File.ls!() |> Enum.flat_map(&dir_files(Path.join(path, &1)))]

      _ ->
        [path]
    end
  end

  defp package, do: Mix.Project.config()[:package]

  defp git_files(dir) do
    {out, 0} = System.cmd("git", ["ls-files", "--", dir], cd: @root)
    String.split(out, "\n", trim: true)
  end

  test "the package holds the sources, the build files and the docs" do
    files = package_files(package()[:files])

    for f <- ~w(Makefile mix.exs rebar.config README.md LICENSE CHANGELOG.md
                docs/protocol.md scripts/doc_chunks.escript src/ws_port.app.src
                src/ws_port.erl src/ws_port_int.hrl lib/ws_port.ex c_src/ws_port.c
                c_src/wsp_compat.h) do
      assert f in files, "#{f} is not in the package"
    end

    # every tracked source of the C, Erlang and Elixir code
    for dir <- ~w(c_src src lib), f <- git_files(dir) do
      assert f in files, "#{f} is not in the package"
    end
  end

  test "the package holds nothing built or private to this checkout" do
    files = package_files(package()[:files])

    out =
      Enum.filter(files, fn f ->
        String.starts_with?(f, ~w(priv/ _build/ c_build/ test/ deps/ doc/ bench/out/)) or
          String.contains?(f, "node_modules") or
          Path.extname(f) in ~w(.o .beam .so .a .chunk) or
          String.starts_with?(Path.basename(f), "ws_port.asan")
      end)

    assert out == []

    # and nothing git ignores (an editor's or a build's leftovers)
    {ignored, _} = System.cmd("git", ["check-ignore", "--no-index" | files], cd: @root)
    assert ignored == ""
  end

  test "mix.exs and ws_port.app.src (rebar3's Hex metadata) agree" do
    {:ok, [{:application, :ws_port, app}]} =
      :file.consult(Path.join(@root, "src/ws_port.app.src"))

    assert Enum.map(app[:files], &to_string/1) |> Enum.sort() == Enum.sort(package()[:files])
    assert Enum.map(app[:licenses], &to_string/1) == package()[:licenses]

    assert Map.new(app[:links], fn {k, v} -> {to_string(k), to_string(v)} end) ==
             package()[:links]

    assert to_string(app[:vsn]) == Mix.Project.config()[:version]
    config = Mix.Project.config()
    assert config[:source_url] == package()[:links]["Source"]
    assert config[:docs][:main] == "readme"
    assert "README.md" in config[:docs][:extras] and "CHANGELOG.md" in config[:docs][:extras]
  end

  @tag timeout: 300_000
  # PKG_CONFIG=false: a pkg-config that knows none of the libraries, so
  # this build also checks the Makefile's fallback to plain -l flags (every
  # other build here uses pkg-config)
  test "the package's files alone build the port program (without pkg-config)" do
    tmp = Path.join(System.tmp_dir!(), "ws_port_pkg_#{System.unique_integer([:positive])}")
    on_exit(fn -> File.rm_rf!(tmp) end)

    for f <- package_files(package()[:files]) do
      File.mkdir_p!(Path.join(tmp, Path.dirname(f)))
      File.cp!(Path.join(@root, f), Path.join(tmp, f))
    end

    refute File.exists?(Path.join(tmp, "priv/ws_port"))

    {out, status} =
      System.cmd("make", ["-s", "priv/ws_port", "CFLAGS=-O0", "PKG_CONFIG=false"],
        cd: tmp,
        stderr_to_stdout: true
      )

    assert status == 0, out
    assert {"ws_port " <> _, 0} = System.cmd(Path.join(tmp, "priv/ws_port"), ["--version"])
  end
end
