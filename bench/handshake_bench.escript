#!/usr/bin/env escript
%% -*- erlang -*-
%%! -noinput
%%
%% handshake_bench: what a server trickling its upgrade response one byte
%% per send costs the port program, and what it does to another connection
%% on the same port program meanwhile. Same conventions as ws_bench.escript
%% ($WS_PORT_EBIN, $WS_PORT_PROGRAM); one result line.
%%
%%   escript bench/handshake_bench.escript TRICKLE_URL ECHO_URL ATTEMPTS [SIZE]
%%
%% TRICKLE_URL: test/peers/evil_server.py /trickle_headers (a 101 status line,
%% then short header lines one byte per send(2), never the end of the head:
%% each attempt ends when the port program gives up at its 64 KiB limit).
%% ECHO_URL: an echo server (bench/out/firehose ?mode=echo).
%%
%% On one dedicated driver (one port program), a bystander connection to
%% ECHO_URL keeps one SIZE-byte (default 100) binary message in flight:
%%   1. reference: 2000 round trips with nothing else going on;
%%   2. ATTEMPTS connections to TRICKLE_URL one after the other (retry off),
%%      nothing else going on: the port program's CPU and the wall time per
%%      attempt;
%%   3. ATTEMPTS more, the bystander's round trips going on the whole time:
%%      their latency (trickle_*) and count.
%% Printed:
%%   attempts=N reason=R ref_p50_us= ref_p99_us= trickle_p50_us= trickle_p99_us=
%%   trickle_max_us= echoes_during= cpu_per_attempt_ms= user_per_attempt_ms=
%%   sys_per_attempt_ms= wall_per_attempt_ms= ref_cpu_ms_per_1000_echoes=
%% cpu_*: utime+stime of the port program (/proc/<pid>/stat, 10 ms ticks)
%% over the phase; reason: how the last trickled attempt ended.

-mode(compile).

main([TrickleUrl, EchoUrl, Attempts | Rest]) ->
    Size = case Rest of [S] -> list_to_integer(S); [] -> 100 end,
    start(),
    {ok, Driver} = ws_port_driver:start_link(),
    [OsPid] = [P || P <- ws_port_pids(), owner_of(P) =:= Driver],
    Echo = connect(EchoUrl, #{driver => Driver}),
    Payload = binary:copy(<<"e">>, Size),
    _ = [rtt(Echo, Payload) || _ <- lists:seq(1, 200)],
    %% 1. reference
    C0 = cpu(OsPid),
    Ref = lists:sort([rtt(Echo, Payload) || _ <- lists:seq(1, 2000)]),
    {U1, S1} = cpu_us(OsPid),
    C1 = U1 + S1,
    %% 2. trickled attempts alone: the port program's CPU per attempt
    N = list_to_integer(Attempts),
    T0 = erlang:monotonic_time(),
    Reason = alone(list_to_binary(TrickleUrl), Driver, N, none),
    T1 = erlang:monotonic_time(),
    {U2, S2} = cpu_us(OsPid),
    C2 = U2 + S2,
    %% 3. trickled attempts again, the bystander echoing all along
    {_, During} = attempts(list_to_binary(TrickleUrl), Driver, Echo, Payload, N, none, []),
    ok = ws_port:close(Echo),
    Sorted = lists:sort(During),
    Wall = erlang:convert_time_unit(T1 - T0, native, microsecond) / 1000,
    io:format("attempts=~b reason=~s ref_p50_us=~.1f ref_p99_us=~.1f trickle_p50_us=~.1f "
              "trickle_p99_us=~.1f trickle_max_us=~.1f echoes_during=~b cpu_per_attempt_ms=~.1f "
              "user_per_attempt_ms=~.1f sys_per_attempt_ms=~.1f wall_per_attempt_ms=~.1f "
              "ref_cpu_ms_per_1000_echoes=~.2f~n",
              [N, reason_text(Reason), pct(Ref, 50), pct(Ref, 99), pct(Sorted, 50),
               pct(Sorted, 99), lists:last(Sorted) / 1000, length(Sorted),
               (C2 - C1) * 1000 / N, (U2 - U1) * 1000 / N, (S2 - S1) * 1000 / N, Wall / N,
               (C1 - C0) * 1000 / 2]),
    halt(0);
main(_) ->
    io:format(standard_error,
              "usage: handshake_bench.escript TRICKLE_URL ECHO_URL ATTEMPTS [SIZE]~n", []),
    halt(2).

%% One trickled attempt after the other, nothing else going on.
alone(_Url, _Driver, 0, Reason) ->
    Reason;
alone(Url, Driver, N, _) ->
    {ok, T} = ws_port:connect(Url, trickle_opts(Driver)),
    receive
        {ws_port_closed, T, Reason} -> alone(Url, Driver, N - 1, Reason);
        {ws_port_up, T, _} -> fail("the trickled connection came up", [])
    after 120000 -> fail("trickled attempt not over in 120 s", [])
    end.

trickle_opts(Driver) ->
    #{driver => Driver, await => false, retry => false, connect_timeout => 120000,
      tls => #{verify => verify_none}}.

%% One trickled attempt after the other; round trips on Echo all along.
attempts(_Url, _Driver, _Echo, _Payload, 0, Reason, Acc) ->
    {Reason, Acc};
attempts(Url, Driver, Echo, Payload, N, _, Acc) ->
    {ok, T} = ws_port:connect(Url, trickle_opts(Driver)),
    {Reason, Acc1} = echo_until_closed(T, Echo, Payload, Acc),
    attempts(Url, Driver, Echo, Payload, N - 1, Reason, Acc1).

echo_until_closed(T, Echo, Payload, Acc) ->
    T0 = erlang:monotonic_time(nanosecond),
    ok = ws_port:send(Echo, {binary, Payload}),
    wait_echo(T, Echo, Payload, T0, Acc, running).

wait_echo(T, Echo, Payload, T0, Acc, State) ->
    receive
        {ws_port, Echo, {binary, _}} ->
            Acc1 = [erlang:monotonic_time(nanosecond) - T0 | Acc],
            case State of
                running -> echo_until_closed(T, Echo, Payload, Acc1);
                {done, Reason} -> {Reason, Acc1}
            end;
        {ws_port_closed, T, Reason} ->
            wait_echo(T, Echo, Payload, T0, Acc, {done, Reason});
        {ws_port_up, T, _} ->
            fail("the trickled connection came up", []);
        {ws_port_closed, Echo, R} ->
            fail("bystander closed: ~p", [R])
    after 120000 -> fail("no echo in 120 s", [])
    end.

rtt(Conn, Payload) ->
    T0 = erlang:monotonic_time(nanosecond),
    ok = ws_port:send(Conn, {binary, Payload}),
    receive
        {ws_port, Conn, {binary, _}} -> erlang:monotonic_time(nanosecond) - T0;
        {ws_port_closed, Conn, R} -> fail("closed: ~p", [R])
    after 10000 -> fail("no echo in 10 s", [])
    end.

pct(Sorted, P) ->
    lists:nth(min(length(Sorted), length(Sorted) * P div 100 + 1), Sorted) / 1000.

reason_text({Kind, Detail}) when is_binary(Detail) ->
    Text = io_lib:format("~s:~s", [Kind, Detail]),
    [case C of $\s -> $_; _ -> C end || C <- lists:flatten(Text)];
reason_text(R) ->
    [case C of $\s -> $_; _ -> C end || C <- lists:flatten(io_lib:format("~0p", [R]))].

start() ->
    add_code_path(),
    ok = application:load(ws_port),
    case os:getenv("WS_PORT_PROGRAM") of
        false -> ok;
        Prog -> application:set_env(ws_port, port_program, Prog)
    end,
    {ok, _} = application:ensure_all_started(ws_port),
    ok.

connect(Url, Opts) ->
    case ws_port:connect(list_to_binary(Url), Opts) of
        {ok, Conn} -> Conn;
        Error -> fail("connect: ~p", [Error])
    end.

owner_of(OsPid) ->
    hd([Owner || P <- erlang:ports(),
                 {os_pid, O} <- [erlang:port_info(P, os_pid)], O =:= OsPid,
                 {connected, Owner} <- [erlang:port_info(P, connected)]]).

fail(Fmt, Args) ->
    io:format(standard_error, "handshake_bench: " ++ Fmt ++ "~n", Args),
    halt(1).

add_code_path() ->
    Root = filename:dirname(filename:dirname(filename:absname(escript:script_name()))),
    Cands = case os:getenv("WS_PORT_EBIN") of
                false -> [];
                E -> [E]
            end ++ filelib:wildcard(filename:join([Root, "_build", "*", "lib", "ws_port", "ebin"])),
    case [D || D <- Cands, filelib:is_file(filename:join(D, "ws_port.beam"))] of
        [Ebin | _] ->
            code:add_patha(Ebin),
            Lib = filename:dirname(filename:dirname(Ebin)),
            [code:add_pathz(P) || P <- filelib:wildcard(filename:join([Lib, "*", "ebin"])),
                                  P =/= Ebin],
            ok;
        [] ->
            fail("no ws_port.beam found (set WS_PORT_EBIN or build with rebar3/mix)", [])
    end.

ws_port_pids() ->
    [Pid || P <- erlang:ports(),
            {name, Name} <- [erlang:port_info(P, name)],
            lists:prefix("ws_port", filename:basename(hd(string:split(Name, " ")))),
            {os_pid, Pid} <- [erlang:port_info(P, os_pid)],
            is_integer(Pid)].

%% utime + stime of an OS process, in seconds.
cpu(Pid) ->
    {U, S} = cpu_us(Pid),
    U + S.

%% {utime, stime} of an OS process, in seconds (clock ticks of 10 ms).
cpu_us(Pid) ->
    {ok, Stat} = file:read_file("/proc/" ++ integer_to_list(Pid) ++ "/stat"),
    [_, Rest] = string:split(Stat, ")", trailing),
    Fields = string:lexemes(Rest, " "),
    UT = binary_to_integer(lists:nth(12, Fields)),
    ST = binary_to_integer(lists:nth(13, Fields)),
    {UT / 100, ST / 100}.
