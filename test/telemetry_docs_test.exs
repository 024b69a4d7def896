defmodule WsPort.TelemetryDocsTest do
  @moduledoc """
  Keeps the README's Telemetry table true: every event the code emits (the
  connection events of ws_port_driver, the Phoenix client's, the Broadway
  producer's) has a row with the same measurement keys, and every row is an
  event the code emits.
  """
  use ExUnit.Case, async: true

  @root Path.expand("..", __DIR__)

  defp read(rel), do: File.read!(Path.join(@root, rel))

  defp keys(map_body, sep),
    do: Regex.scan(~r/(\w+)\s*#{sep}/, map_body) |> Enum.map(&Enum.at(&1, 1)) |> Enum.sort()

  # {event as written in the README, sorted measurement keys}
  defp emitted do
    erl_direct =
      for file <-
            ~w(src/ws_port_driver.erl src/ws_port_phoenix_conn.erl src/ws_port_phoenix_client.erl),
          [_, event, body] <-
            Regex.scan(
              ~r/ws_port_telemetry:execute\(\s*\[(ws_port, [a-z_, ]+)\],\s*#\{([^}]*)\}/,
              read(file)
            ),
          do: {"[#{event}]", keys(body, "=>")}

    phoenix =
      for [_, event, body] <-
            Regex.scan(
              ~r/\btelemetry\(\[([a-z_, ]+)\],\s*#\{([^}]*)\}/,
              read("src/ws_port_phoenix_conn.erl")
            ),
          do: {"[ws_port, phoenix, #{event}]", keys(body, "=>")}

    producer =
      for [_, event, body] <-
            Regex.scan(~r/emit\(s, :(\w+), %\{([^}]*)\}/, read("lib/ws_port/producer_core.ex")),
          do: {"[telemetry_id, :connection, :#{event}]", keys(body, ":")}

    Enum.uniq(erl_direct ++ phoenix ++ producer)
  end

  defp documented do
    [_, section] = String.split(read("README.md"), "\n## Telemetry\n", parts: 2)
    [section | _] = String.split(section, "\n## ", parts: 2)

    for line <- String.split(section, "\n"),
        [_, event, measurements] <- [Regex.run(~r/^\| `(\[[^`]+\])` \| ([^|]*) \|/, line)] do
      {event, Regex.scan(~r/`(\w+)`/, measurements) |> Enum.map(&Enum.at(&1, 1)) |> Enum.sort()}
    end
  end

  test "the code emits events (the scan finds them)" do
    events = for {e, _} <- emitted(), do: e
    assert "[ws_port, connection, up]" in events
    assert "[ws_port, phoenix, connect, stop]" in events
    assert "[ws_port, phoenix, message]" in events
    assert "[telemetry_id, :connection, :closed]" in events
    assert length(Enum.uniq(events)) >= 20
  end

  test "every emitted event is in the README's table with its measurements" do
    assert Enum.sort(emitted() -- documented()) == []
  end

  test "every row of the README's table is an event the code emits" do
    assert Enum.sort(documented() -- emitted()) == []
  end

  test "each event has one row" do
    events = for {e, _} <- documented(), do: e
    assert events -- Enum.uniq(events) == []
  end
end
