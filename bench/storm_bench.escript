#!/usr/bin/env escript
%% -*- erlang -*-
%%! +P 1048576 +Q 1048576
%%
%% storm_bench: the reconnect storm (issue 16). N wss connections held by
%% ws_port on one driver (one port program), each owned by its own process,
%% with the default retry policy (1 s, full jitter) or another jitter; the server
%% (bench/out/storm_server) is killed and started again on the same port
%% with the same ticket keys, and every connection comes back.
%%
%%   escript bench/storm_bench.escript SERVER CERT KEY TICKETKEY N REUSE [TLS]
%%     (environment: STORM_CONNECT_TIMEOUT, ms, default 60000;
%%      STORM_JITTER: the retry policy's jitter, full | equal | a fraction,
%%      default: none given, the library's default)
%%     SERVER  bench/out/storm_server;  CERT KEY: its certificate (also the
%%             client's cacertfile: verification on, name localhost)
%%     REUSE   true | false: the connections' tls reuse_sessions
%%     TLS     13 (default) | 12: the server's highest version
%%
%% One result line on stdout:
%%   n=N reuse=R tls=T open_s=.. first_up_ms=.. all_up_ms=.. p50_up_ms=.. p99_up_ms=..
%%   client_resumed=.. server_full=.. server_resumed=.. port_cpu_s=..
%%   port_peak_pct=.. beam_cpu_s=.. beam_peak_pct=.. server_cpu_s=..
%%   server_peak_pct=.. peak_hs_per_100ms=.. hs_slots=.. jitter=..
%%   retry1_peak_per_100ms=.. retry1_hist=D1:C1,... hist=T1:H1,T2:H2,...
%% Times are from the kill; CPU is utime + stime from /proc/<pid>/stat,
%% sampled every 100 ms from the kill until every connection is up again
%% (peak: the largest 100 ms sample, in % of one CPU); server CPU is the
%% restarted server's, from its start. hist: the restarted server's TLS
%% handshakes (full + resumed) per 100 ms slot, slot start in ms from the
%% kill. retry1_hist: the first retry's delay_ms as the port program drew
%% it (ws_port_down, attempt 1), connections per 100 ms slot of delay.

-mode(compile).

main([Server, Cert, Key, TicketKey, NS, ReuseS | Rest]) ->
    Tls = case Rest of ["12"] -> "12"; _ -> "13" end,
    N = list_to_integer(NS),
    Reuse = list_to_atom(ReuseS),
    add_code_path(),
    ok = application:load(ws_port),
    case os:getenv("WS_PORT_PROGRAM") of
        false -> ok;
        Prog -> application:set_env(ws_port, port_program, Prog)
    end,
    {ok, _} = application:ensure_all_started(ws_port),
    {ok, Driver} = ws_port_driver:start_link(),
    [PortPid] = [P || P <- ws_port_pids(), owner_of(P) =:= Driver],
    Args0 = ["--tls", Cert, Key, "--ticket-key", TicketKey] ++
        case Tls of "12" -> ["--tls12"]; _ -> [] end,
    {Srv1, SrvPid1, PortNum} = start_server(Server, Args0),
    Url = list_to_binary("wss://localhost:" ++ integer_to_list(PortNum) ++ "/"),
    %% connect_timeout 60 s (default 15 s): with the default, the driver's
    %% guard (connect_timeout + delay + 3 s without news from the port)
    %% closed some connections for good during a 10,000-connection storm on
    %% this loaded machine, and the run could not finish
    ConnectTimeout = list_to_integer(os:getenv("STORM_CONNECT_TIMEOUT", "60000")),
    Jitter = os:getenv("STORM_JITTER", "default"),
    Retry = case Jitter of
                "default" -> #{};
                J when J =:= "full"; J =:= "equal" -> #{retry => #{jitter => list_to_atom(J)}};
                J -> #{retry => #{jitter => list_to_number(J)}}
            end,
    Opts = Retry#{driver => Driver, await => false, connect_timeout => ConnectTimeout,
                  tls => #{cacertfile => list_to_binary(Cert), reuse_sessions => Reuse}},
    Self = self(),
    T0 = erlang:monotonic_time(millisecond),
    Owners = open_window(Url, Opts, Self, N, 200, 0, []),
    OpenS = (erlang:monotonic_time(millisecond) - T0) / 1000,
    %% let every ticket arrive (they come with the first records)
    timer:sleep(2000),
    drain_lines(Srv1),
    %% the storm
    Kill = os:system_time(millisecond),
    KillMono = erlang:monotonic_time(millisecond),
    os:cmd("kill -9 " ++ integer_to_list(SrvPid1)),
    receive {Srv1, {exit_status, _}} -> ok after 10000 -> fail("the server did not die", []) end,
    {Srv2, SrvPid2, PortNum} = start_server(Server, Args0 ++ ["--port", integer_to_list(PortNum)]),
    Sampler = spawn_link(fun() -> sampler([PortPid, os:getpid(), SrvPid2], []) end),
    {UpTimes, Resumed} = await_ups(N, KillMono, [], 0),
    Sampler ! {stop, self()},
    Samples = receive {samples, S} -> S end,
    timer:sleep(300),
    Lines = collect_lines(Srv2, []),
    %% slots with handshakes (lines with accepts only are left out)
    Hist = [{T - Kill, F + R} || {T, F, R} <- Lines, F + R > 0],
    SFull = lists:sum([F || {_, F, _} <- Lines]),
    SRes = lists:sum([R || {_, _, R} <- Lines]),
    Sorted = lists:sort(UpTimes),
    [{PortCpu, PortPeak}, {BeamCpu, BeamPeak}, {_, SrvPeak}] = cpu_stats(Samples),
    SrvCpu = cpu(SrvPid2),
    HistS = string:join([io_lib:format("~b:~b", [T, H]) || {T, H} <- lists:sort(Hist)], ","),
    Peak = lists:max([0 | [H || {_, H} <- Hist]]),
    D1 = lists:sort([{Slot * 100, C} || {{d1, Slot}, C} <- get()]),
    D1S = string:join([io_lib:format("~b:~b", [T, C]) || {T, C} <- D1], ","),
    D1Peak = lists:max([0 | [C || {_, C} <- D1]]),
    io:format("n=~b reuse=~p tls=~s open_s=~.2f first_up_ms=~b all_up_ms=~b p50_up_ms=~b p99_up_ms=~b "
              "client_resumed=~b server_full=~b server_resumed=~b port_cpu_s=~.3f port_peak_pct=~b "
              "beam_cpu_s=~.3f beam_peak_pct=~b server_cpu_s=~.3f server_peak_pct=~b "
              "peak_hs_per_100ms=~b hs_slots=~b downs=~s jitter=~s retry1_peak_per_100ms=~b "
              "retry1_hist=~s hist=~s~n",
              [N, Reuse, Tls, OpenS, hd(Sorted), lists:last(Sorted), lists:nth(max(1, N div 2), Sorted),
               lists:nth(max(1, N * 99 div 100), Sorted), Resumed, SFull, SRes,
               PortCpu, PortPeak, BeamCpu, BeamPeak, SrvCpu, SrvPeak, Peak, length(Hist), downs(),
               Jitter, D1Peak, D1S, HistS]),
    [exit(O, kill) || O <- Owners],
    os:cmd("kill " ++ integer_to_list(SrvPid2)),
    halt(0).

start_server(Server, Args) ->
    P = open_port({spawn_executable, Server},
                  [{args, Args}, {line, 4096}, binary, exit_status, use_stdio]),
    {os_pid, OsPid} = erlang:port_info(P, os_pid),
    put(servers, [OsPid | case get(servers) of undefined -> []; L -> L end]),
    receive
        {P, {data, {eol, <<"PORT ", Num/binary>>}}} -> {P, OsPid, binary_to_integer(Num)};
        {P, {exit_status, S}} -> fail("the server exited (~p)", [S])
    after 10000 -> fail("the server did not start", [])
    end.

drain_lines(P) ->
    receive {P, {data, _}} -> drain_lines(P) after 0 -> ok end.

%% H lines so far: [{SlotUnixMs, Full, Resumed}]
collect_lines(P, Acc) ->
    receive
        {P, {data, {eol, <<"H ", Rest/binary>>}}} ->
            [T, <<"full=", F/binary>>, <<"resumed=", R/binary>> | _] =
                binary:split(Rest, <<" ">>, [global]),
            collect_lines(P, [{binary_to_integer(T), binary_to_integer(F), binary_to_integer(R)} | Acc]);
        {P, {data, _}} ->
            collect_lines(P, Acc)
    after 0 -> lists:reverse(Acc)
    end.

%% Owners: one process per connection, reporting its ups to the collector.
open_window(_Url, _Opts, _Self, 0, _Window, 0, Acc) ->
    Acc;
open_window(Url, Opts, Self, Left, Window, Pending, Acc) when Left > 0, Pending < Window ->
    O = spawn(fun() -> owner(Url, Opts, Self) end),
    open_window(Url, Opts, Self, Left - 1, Window, Pending + 1, [O | Acc]);
open_window(Url, Opts, Self, Left, Window, Pending, Acc) ->
    receive
        {up, _, _} -> open_window(Url, Opts, Self, Left, Window, Pending - 1, Acc);
        {failed, R} -> fail("connection failed after ~b: ~p", [length(Acc), R])
    after 60000 -> fail("no handshake in 60 s (~b pending)", [Pending])
    end.

owner(Url, Opts, Collector) ->
    case ws_port:connect(Url, Opts) of
        {ok, Conn} -> owner_loop(Conn, {Url, Opts}, Collector, false);
        Error -> Collector ! {failed, Error}
    end.

owner_loop(Conn, {Url, Opts} = UO, Collector, Up) ->
    receive
        {ws_port_up, Conn, Info} ->
            Collector ! {up, erlang:monotonic_time(millisecond), maps:get(tls_resumed, Info, false)},
            owner_loop(Conn, UO, Collector, true);
        {ws_port_closed, Conn, _} when not Up ->
            %% the first attempt failed (connect_timeout on a loaded
            %% machine): that is not the storm, open it again
            owner(Url, Opts, Collector);
        {ws_port_closed, Conn, R} ->
            Collector ! {failed, R};
        {ws_port_down, Conn, R, Info} ->
            Collector ! {down, R, Info};
        _ ->
            ok
    end,
    owner_loop(Conn, UO, Collector, Up).

await_ups(0, _T0, Acc, Resumed) ->
    {Acc, Resumed};
await_ups(N, T0, Acc, Resumed) ->
    receive
        {down, R, Info} ->
            put({down, reason_class(R)}, get_down(reason_class(R)) + 1),
            case Info of
                #{attempt := 1, delay_ms := D} when is_integer(D) ->
                    put({d1, D div 100}, get_d1(D div 100) + 1);
                _ ->
                    ok
            end,
            await_ups(N, T0, Acc, Resumed);
        {up, T, R} -> await_ups(N - 1, T0, [T - T0 | Acc], Resumed + if R -> 1; true -> 0 end);
        {failed, R} -> fail("a connection closed for good: ~p", [R])
    after 600000 -> fail("~b connections still down after 600 s without an up", [N])
    end.

get_down(K) -> case get({down, K}) of undefined -> 0; V -> V end.

get_d1(K) -> case get({d1, K}) of undefined -> 0; V -> V end.

list_to_number(S) ->
    try list_to_float(S) catch error:badarg -> list_to_integer(S) end.

reason_class({A, _}) when is_atom(A) -> A;
reason_class({A, _, _}) when is_atom(A) -> A;
reason_class(A) when is_atom(A) -> A;
reason_class(_) -> other.

downs() ->
    string:join([io_lib:format("~p:~b", [K, V]) || {{down, K}, V} <- lists:sort(get())], ",").

%% CPU of each pid every 100 ms until stopped: [[Seconds per pid]]
sampler(Pids, Acc) ->
    S = [cpu(P) || P <- Pids],
    receive
        {stop, From} -> From ! {samples, lists:reverse([S | Acc])}
    after 100 ->
        sampler(Pids, [S | Acc])
    end.

%% per pid: {total seconds, peak % of one CPU over one 100 ms sample}
cpu_stats([First | _] = Samples) ->
    Last = lists:last(Samples),
    Pairs = lists:zip(lists:droplast(Samples), tl(Samples)),
    [{lists:nth(K, Last) - lists:nth(K, First),
      round(lists:max([0.0 | [(lists:nth(K, B) - lists:nth(K, A)) * 1000 || {A, B} <- Pairs]]))}
     || K <- lists:seq(1, length(First))].

%% utime + stime of an OS process, in seconds.
cpu(Pid) when is_integer(Pid) -> cpu(integer_to_list(Pid));
cpu(Pid) ->
    case file:read_file("/proc/" ++ Pid ++ "/stat") of
        {ok, Stat} ->
            [_, Rest] = string:split(Stat, ")", trailing),
            Fields = string:lexemes(Rest, " "),
            (binary_to_integer(lists:nth(12, Fields)) + binary_to_integer(lists:nth(13, Fields))) / 100;
        _ -> 0.0
    end.

fail(Fmt, Args) ->
    io:format(standard_error, "storm_bench: " ++ Fmt ++ "~n", Args),
    %% the servers this run started (a killed one is gone already)
    [os:cmd("kill " ++ integer_to_list(P) ++ " 2>/dev/null") || P <- case get(servers) of
                                                                        undefined -> [];
                                                                        L -> L
                                                                    end],
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

owner_of(OsPid) ->
    hd([Owner || P <- erlang:ports(),
                 {os_pid, O} <- [erlang:port_info(P, os_pid)], O =:= OsPid,
                 {connected, Owner} <- [erlang:port_info(P, connected)]]).
