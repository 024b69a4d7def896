#!/usr/bin/env escript
%% -*- erlang -*-
%%! -noinput
%%
%% ws_bench: latency, connection setup and idle memory of ws_port, against
%% bench/out/firehose (echo and idle modes). Same conventions as
%% recv_bench.escript ($WS_PORT_EBIN, $WS_PORT_PROGRAM); one result line.
%%
%%   escript bench/ws_bench.escript echo URL N [SIZE]
%%     one message of SIZE bytes (default 100) in flight, N timed round
%%     trips after N/10 (at least 100) warm-up ones; URL in echo mode
%%     msgs=N size=S rtt_p50_us=.. rtt_p99_us=.. rtt_mean_us=.. cpu_port=.. cpu_beam=..
%%
%%   escript bench/ws_bench.escript pipe N [SIZE]
%%     the floor under any port program: the same loop (N timed round trips
%%     of SIZE bytes after the same warm-up) through /bin/cat, a port that
%%     only echoes its stdin (one BEAM -> program -> BEAM hop, no socket)
%%     msgs=N size=S rtt_p50_us=.. rtt_p99_us=.. rtt_mean_us=..
%%
%%   escript bench/ws_bench.escript setup URL N
%%     N connections opened one after the other (ws_port:connect/2 awaiting
%%     the handshake), kept open until all are up; URL in idle mode
%%     conns=N secs=S conns_per_s=R cpu_port=.. cpu_beam=..
%%
%%   escript bench/ws_bench.escript send URL N SIZE text|binary [ascii|mixed]
%%     N messages of SIZE bytes sent as fast as send/2 returns (URL in sink
%%     mode with size=SIZE), timed until the port program has written them
%%     all (its bytes_out); for text, what send/2's UTF-8 check costs
%%     (compare with binary): content ascii (default) or mixed (1- to 4-byte
%%     characters)
%%     msgs=N size=S type=T content=C secs=.. mb_per_s=.. cpu_port=.. cpu_beam=..
%%       beam_cpu_s_per_gb=..
%%
%%   escript bench/ws_bench.escript idle URL N [WINDOW]
%%     (environment: IDLE_OPTS, an Erlang term of extra connect options,
%%     e.g. "#{compress => #{server_no_context_takeover => true}}";
%%     IDLE_RECV=K: wait until every connection received K messages first)
%%     N idle connections open at once (at most WINDOW handshakes under way,
%%     default 500), on one dedicated driver (one port program); memory
%%     measured before and after (garbage collected, 1 s settle):
%%     conns=N beam_kib_per_conn=.. port_kib_per_conn=.. total_kib_per_conn=..
%%       beam_before_kib=.. beam_after_kib=.. port_before_kib=.. port_after_kib=..
%%       secs=S
%%
%% The BEAM figure is erlang:memory(total) (the whole VM: driver state, ETS
%% row, monitors, the handles held by this process); the port figure is the
%% port program's VmRSS.

-mode(compile).

main(["echo", Url, N | Rest]) ->
    Size = case Rest of [S] -> list_to_integer(S); [] -> 100 end,
    start(),
    Conn = connect(Url, #{}),
    Payload = binary:copy(<<"e">>, Size),
    Ports = ws_port_pids(),
    Count = list_to_integer(N),
    Warm = max(100, Count div 10),
    _ = rtts(Conn, Payload, Warm, []),
    Cpu0 = cpu_sum(Ports),
    Beam0 = cpu(os:getpid()),
    Rtts = lists:sort(rtts(Conn, Payload, Count, [])),
    Cpu1 = cpu_sum(Ports),
    Beam1 = cpu(os:getpid()),
    ok = ws_port:close(Conn),
    P50 = lists:nth(Count div 2 + 1, Rtts),
    P99 = lists:nth(Count * 99 div 100 + 1, Rtts),
    Mean = lists:sum(Rtts) / Count,
    io:format("msgs=~b size=~b rtt_p50_us=~.1f rtt_p99_us=~.1f rtt_mean_us=~.1f "
              "cpu_port=~.3f cpu_beam=~.3f~n",
              [Count, Size, P50 / 1000, P99 / 1000, Mean / 1000, Cpu1 - Cpu0, Beam1 - Beam0]),
    halt(0);
main(["pipe", N | Rest]) ->
    Size = case Rest of [S] -> list_to_integer(S); [] -> 100 end,
    Cat = case os:find_executable("cat") of
              false -> fail("no cat program", []);
              C -> C
          end,
    Port = open_port({spawn_executable, Cat}, [binary, stream, use_stdio]),
    Payload = binary:copy(<<"e">>, Size),
    Count = list_to_integer(N),
    _ = pipe_rtts(Port, Payload, max(100, Count div 10), []),
    Rtts = lists:sort(pipe_rtts(Port, Payload, Count, [])),
    io:format("msgs=~b size=~b rtt_p50_us=~.1f rtt_p99_us=~.1f rtt_mean_us=~.1f~n",
              [Count, Size, lists:nth(Count div 2 + 1, Rtts) / 1000,
               lists:nth(Count * 99 div 100 + 1, Rtts) / 1000, lists:sum(Rtts) / Count / 1000]),
    halt(0);
main(["setup", Url, N]) ->
    start(),
    Count = list_to_integer(N),
    Ports = ws_port_pids(),
    Cpu0 = cpu_sum(Ports),
    Beam0 = cpu(os:getpid()),
    T0 = erlang:monotonic_time(),
    Conns = [connect(Url, #{}) || _ <- lists:seq(1, Count)],
    T1 = erlang:monotonic_time(),
    Cpu1 = cpu_sum(Ports),
    Beam1 = cpu(os:getpid()),
    Secs = erlang:convert_time_unit(T1 - T0, native, microsecond) / 1.0e6,
    io:format("conns=~b secs=~.4f conns_per_s=~b cpu_port=~.3f cpu_beam=~.3f~n",
              [Count, Secs, round(Count / Secs), Cpu1 - Cpu0, Beam1 - Beam0]),
    [ws_port:close(C) || C <- Conns],
    halt(0);
main(["idle", Url, N | Rest]) ->
    Window = case Rest of [W] -> list_to_integer(W); [] -> 500 end,
    start(),
    {ok, Driver} = ws_port_driver:start_link(),
    [OsPid] = [P || P <- ws_port_pids(), owner_of(P) =:= Driver],
    Count = list_to_integer(N),
    timer:sleep(200),
    {Beam0, Port0} = measure(OsPid),
    T0 = erlang:monotonic_time(),
    Extra = env_term("IDLE_OPTS", #{}),
    Conns = open_window(list_to_binary(Url), Driver, Count, Window, Extra),
    T1 = erlang:monotonic_time(),
    %% IDLE_RECV=K: each connection first receives K messages (the server
    %% sends them on open), then idles
    Recv = list_to_integer(os:getenv("IDLE_RECV", "0")),
    ok = await_data(Count * Recv),
    Pmd = case Conns of
              [C1 | _] -> {ok, I} = ws_port:info(C1), maps:get(compression, I, false) =/= false;
              [] -> false
          end,
    timer:sleep(1000),
    {Beam1, Port1} = measure(OsPid),
    Secs = erlang:convert_time_unit(T1 - T0, native, microsecond) / 1.0e6,
    Beam = (Beam1 - Beam0) / 1024 / Count,
    Port = (Port1 - Port0) / Count,
    io:format("conns=~b beam_kib_per_conn=~.2f port_kib_per_conn=~.2f total_kib_per_conn=~.2f "
              "beam_before_kib=~b beam_after_kib=~b port_before_kib=~b port_after_kib=~b secs=~.2f "
              "recv_per_conn=~b compressed=~p~n",
              [length(Conns), Beam, Port, Beam + Port, Beam0 div 1024, Beam1 div 1024,
               Port0, Port1, Secs, Recv, Pmd]),
    %% IDLE_HOLD=S: keep the connections S seconds more (to look at the
    %% port program: /proc/PID/smaps, gdb)
    case list_to_integer(os:getenv("IDLE_HOLD", "0")) of
        0 -> ok;
        Hold -> io:format(standard_error, "holding ~b s: port program pid ~b~n", [Hold, OsPid]),
                timer:sleep(Hold * 1000)
    end,
    halt(0);
main(["send", Url, N, Size, Type | Rest]) ->
    Content = case Rest of [C] -> C; [] -> "ascii" end,
    start(),
    Bytes = list_to_integer(Size),
    Count = list_to_integer(N),
    Conn = connect(Url, #{}),
    Payload = payload(Content, Bytes),
    MsgType = list_to_atom(Type),
    Ports = ws_port_pids(),
    Cpu0 = cpu_sum(Ports),
    Beam0 = cpu(os:getpid()),
    T0 = erlang:monotonic_time(),
    ok = send_n(Conn, {MsgType, Payload}, Count),
    %% everything written: the port's bytes_out covers every frame
    Frames = Count * (Bytes + 8),
    ok = wait_written(Conn, Frames),
    T1 = erlang:monotonic_time(),
    Cpu1 = cpu_sum(Ports),
    Beam1 = cpu(os:getpid()),
    Secs = erlang:convert_time_unit(T1 - T0, native, microsecond) / 1.0e6,
    ok = ws_port:close(Conn),
    io:format("msgs=~b size=~b type=~s content=~s secs=~.3f mb_per_s=~.1f cpu_port=~.3f "
              "cpu_beam=~.3f beam_cpu_s_per_gb=~.3f~n",
              [Count, Bytes, Type, Content, Secs, Count * Bytes / Secs / 1.0e6,
               Cpu1 - Cpu0, Beam1 - Beam0, (Beam1 - Beam0) / (Count * Bytes / 1.0e9)]),
    halt(0);
main(_) ->
    io:format(standard_error,
              "usage: ws_bench.escript echo URL N [SIZE] | pipe N [SIZE] | setup URL N | idle URL N [WINDOW]"
              " | send URL N SIZE text|binary [ascii|mixed]~n", []),
    halt(2).

%% SIZE bytes of UTF-8: ASCII, or a mix of 1- to 4-byte characters (padded
%% with ASCII to the exact size).
payload("ascii", Size) ->
    binary:copy(<<"a">>, Size);
payload("mixed", Size) ->
    Unit = <<"héllo wörld 日本語 🎉 "/utf8>>,
    Whole = binary:copy(Unit, Size div byte_size(Unit)),
    <<Whole/binary, (binary:copy(<<"a">>, Size - byte_size(Whole)))/binary>>.

send_n(_Conn, _Msg, 0) ->
    ok;
send_n(Conn, Msg, N) ->
    case ws_port:send(Conn, Msg) of
        ok -> send_n(Conn, Msg, N - 1);
        Error -> fail("send: ~p", [Error])
    end.

%% Waits until the port program has written at least Bytes to the socket.
wait_written(Conn, Bytes) ->
    {ok, #{bytes_out := Out}} = ws_port:info(Conn),
    case Out >= Bytes of
        true -> ok;
        false -> timer:sleep(5), wait_written(Conn, Bytes)
    end.

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
    case ws_port:connect(list_to_binary(Url), maps:merge(#{tls => #{verify => verify_none}}, Opts)) of
        {ok, Conn} -> Conn;
        Error -> fail("connect: ~p", [Error])
    end.

rtts(_Conn, _Payload, 0, Acc) ->
    Acc;
rtts(Conn, Payload, N, Acc) ->
    T0 = erlang:monotonic_time(nanosecond),
    ok = ws_port:send(Conn, {binary, Payload}),
    receive
        {ws_port, Conn, {binary, _}} -> ok;
        {ws_port_closed, Conn, R} -> fail("closed: ~p", [R])
    after 10000 -> fail("no echo in 10 s", [])
    end,
    rtts(Conn, Payload, N - 1, [erlang:monotonic_time(nanosecond) - T0 | Acc]).

pipe_rtts(_Port, _Payload, 0, Acc) ->
    Acc;
pipe_rtts(Port, Payload, N, Acc) ->
    T0 = erlang:monotonic_time(nanosecond),
    true = erlang:port_command(Port, Payload),
    ok = pipe_recv(Port, byte_size(Payload)),
    pipe_rtts(Port, Payload, N - 1, [erlang:monotonic_time(nanosecond) - T0 | Acc]).

pipe_recv(_Port, Left) when Left =< 0 ->
    ok;
pipe_recv(Port, Left) ->
    receive
        {Port, {data, D}} -> pipe_recv(Port, Left - byte_size(D))
    after 10000 -> fail("no echo from cat in 10 s", [])
    end.

%% Opens Count connections with await => false, at most Window pending.
open_window(Url, Driver, Count, Window, Extra) ->
    put(extra_opts, Extra),
    open_window(Url, Driver, Count, Window, 0, []).

open_window(_Url, _Driver, 0, _Window, 0, Acc) ->
    Acc;
open_window(Url, Driver, Left, Window, Pending, Acc) when Left > 0, Pending < Window ->
    Opts = maps:merge(#{tls => #{verify => verify_none}, await => false, driver => Driver},
                      get(extra_opts)),
    case ws_port:connect(Url, Opts) of
        {ok, Conn} -> open_window(Url, Driver, Left - 1, Window, Pending + 1, [Conn | Acc]);
        Error -> fail("connect: ~p", [Error])
    end;
open_window(Url, Driver, Left, Window, Pending, Acc) ->
    receive
        {ws_port_up, _, _} -> open_window(Url, Driver, Left, Window, Pending - 1, Acc);
        {ws_port_closed, _, R} -> fail("connection failed after ~b: ~p", [length(Acc), R])
    after 30000 -> fail("no handshake in 30 s (~b pending)", [Pending])
    end.

%% An Erlang term from an environment variable (e.g. IDLE_OPTS="#{compress =>
%% true}"), or Default.
env_term(Name, Default) ->
    case os:getenv(Name) of
        V when V =:= false; V =:= "" -> Default;
        Text ->
            {ok, Tokens, _} = erl_scan:string(Text ++ "."),
            {ok, Term} = erl_parse:parse_term(Tokens),
            Term
    end.

%% Waits for N data messages (text or binary) of any connection.
await_data(0) -> ok;
await_data(N) ->
    receive
        {ws_port, _, {T, _}} when T =:= text; T =:= binary -> await_data(N - 1);
        {ws_port_closed, _, R} -> fail("a connection closed while receiving: ~p", [R])
    after 60000 -> fail("~b messages still missing after 60 s", [N])
    end.

measure(OsPid) ->
    [erlang:garbage_collect(P) || P <- processes()],
    timer:sleep(100),
    {erlang:memory(total), rss_kib(OsPid)}.

rss_kib(OsPid) ->
    {ok, S} = file:read_file("/proc/" ++ integer_to_list(OsPid) ++ "/status"),
    [Line] = [L || L <- binary:split(S, <<"\n">>, [global]), binary:match(L, <<"VmRSS:">>) =/= nomatch],
    [_, Kib | _] = string:lexemes(Line, " \t"),
    binary_to_integer(Kib).

owner_of(OsPid) ->
    hd([Owner || P <- erlang:ports(),
                 {os_pid, O} <- [erlang:port_info(P, os_pid)], O =:= OsPid,
                 {connected, Owner} <- [erlang:port_info(P, connected)]]).

fail(Fmt, Args) ->
    io:format(standard_error, "ws_bench: " ++ Fmt ++ "~n", Args),
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

%% OS pids of the ws_port port programs running in this node.
ws_port_pids() ->
    [Pid || P <- erlang:ports(),
            {name, Name} <- [erlang:port_info(P, name)],
            lists:prefix("ws_port", filename:basename(hd(string:split(Name, " ")))),
            {os_pid, Pid} <- [erlang:port_info(P, os_pid)],
            is_integer(Pid)].

cpu_sum(Pids) -> lists:sum([cpu(P) || P <- Pids]).

%% utime + stime of an OS process, in seconds.
cpu(Pid) when is_integer(Pid) -> cpu(integer_to_list(Pid));
cpu(Pid) ->
    case file:read_file("/proc/" ++ Pid ++ "/stat") of
        {ok, Stat} ->
            [_, Rest] = string:split(Stat, ")", trailing),
            Fields = string:lexemes(Rest, " "),
            UT = binary_to_integer(lists:nth(12, Fields)),
            ST = binary_to_integer(lists:nth(13, Fields)),
            (UT + ST) / 100;
        _ -> 0.0
    end.
