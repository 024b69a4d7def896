#!/usr/bin/env escript
%% -*- erlang -*-
%%! -noinput +P 1000000
%%
%% fanin_bench: many connections, each receiving small paced messages from
%% bench/out/fanin_server, on one dedicated driver (one port program).
%% Same conventions as ws_bench.escript ($WS_PORT_EBIN, $WS_PORT_PROGRAM).
%%
%%   escript bench/fanin_bench.escript procs|one URL N [WARM [WINDOW [OPEN_WINDOW]]]
%%
%% procs: N owner processes, one connection each; one: one owner process
%% holding all N. Connections are opened with at most OPEN_WINDOW (500)
%% handshakes under way; once all are up, WARM seconds (5) of warm-up, then
%% a WINDOW (20 s) measured: messages delivered, sequence gaps (messages the
%% server dropped because the socket was full), latency = receive time
%% (os:system_time(nanosecond), CLOCK_REALTIME) - the server's send time
%% (CLOCK_REALTIME in the payload), in a histogram (counters: 1 µs buckets
%% below 2048 µs, 64 µs above, the last one open-ended at 264 ms; the same as
%% plain_client --fanin), the CPU of the port program and of the BEAM
%% (/proc/<pid>/stat utime+stime) over the window. One line:
%%
%%   mode=M conns=N window_s=W msgs=.. msgs_per_s=.. gaps=.. lat_p50_us=..
%%     lat_p90_us=.. lat_p99_us=.. lat_p999_us=.. lat_max_us=.. cpu_port_s=.. cpu_beam_s=..
%%     port_s_per_m=.. beam_s_per_m=.. mq_end=..
%%
%% lat_max_us is the lower bound of the highest non-empty bucket; mq_end is
%% the messages waiting in the owners' mailboxes at the end of the window (a
%% backlog: the owners fall behind).

-mode(compile).

-define(HIST_N, 6144).
-define(MSGS, (?HIST_N + 1)).
-define(GAPS, (?HIST_N + 2)).

main([Mode, Url, N | Rest]) when Mode =:= "procs"; Mode =:= "one" ->
    [Warm, Window, OpenWindow] =
        [list_to_integer(A) || A <- Rest ++ lists:nthtail(length(Rest), ["5", "20", "500"])],
    start(),
    {ok, Driver} = ws_port_driver:start_link(),
    [OsPid] = [P || P <- ws_port_pids(), owner_of(P) =:= Driver],
    Count = list_to_integer(N),
    io:format(standard_error, "fanin_bench: port program os pid ~b~n", [OsPid]),
    H = counters:new(?GAPS, [write_concurrency]),
    Ctx = #{url => list_to_binary(Url), driver => Driver, hist => H, coord => self()},
    T0 = erlang:monotonic_time(millisecond),
    Owners = case Mode of
                 "procs" -> open_procs(Ctx, Count, OpenWindow);
                 "one" -> open_one(Ctx, Count, OpenWindow)
             end,
    T1 = erlang:monotonic_time(millisecond),
    io:format(standard_error, "fanin_bench: ~b connections up in ~.1f s~n",
              [Count, (T1 - T0) / 1000]),
    timer:sleep(Warm * 1000),
    Prof = profile_start(Driver),
    S0 = snapshot(H),
    Cpu0 = {cpu(OsPid), cpu(os:getpid())},
    W0 = erlang:monotonic_time(microsecond),
    Sampler = sampler_start(Prof, Driver),
    timer:sleep(Window * 1000),
    S1 = snapshot(H),
    Cpu1 = {cpu(OsPid), cpu(os:getpid())},
    W1 = erlang:monotonic_time(microsecond),
    profile_stop(Prof, Sampler, Driver, Owners),
    Mq = lists:sum([Q || O <- Owners, {message_queue_len, Q} <- [process_info(O, message_queue_len)]]),
    Secs = (W1 - W0) / 1.0e6,
    Hist = [B - A || {A, B} <- lists:zip(S0, S1)],
    {HistB, [Msgs, Gaps]} = lists:split(?HIST_N, Hist),
    CpuPort = element(1, Cpu1) - element(1, Cpu0),
    CpuBeam = element(2, Cpu1) - element(2, Cpu0),
    PerM = fun(C) when Msgs > 0 -> C / (Msgs / 1.0e6); (_) -> 0.0 end,
    io:format("mode=~s conns=~b window_s=~.1f msgs=~b msgs_per_s=~b gaps=~b lat_p50_us=~b "
              "lat_p90_us=~b lat_p99_us=~b lat_p999_us=~b lat_max_us=~b cpu_port_s=~.2f cpu_beam_s=~.2f "
              "port_s_per_m=~.3f beam_s_per_m=~.3f mq_end=~b~n",
              [Mode, Count, Secs, Msgs, round(Msgs / Secs), Gaps,
               pct(HistB, Msgs, 0.5), pct(HistB, Msgs, 0.9), pct(HistB, Msgs, 0.99), pct(HistB, Msgs, 0.999),
               hmax(HistB), CpuPort, CpuBeam, PerM(CpuPort), PerM(CpuBeam), Mq]),
    halt(0);
main(_) ->
    io:format(standard_error,
              "usage: fanin_bench.escript procs|one URL N [WARM [WINDOW [OPEN_WINDOW]]]~n", []),
    halt(2).

%% ---- procs: one owner process per connection

open_procs(Ctx, Count, Window) ->
    open_procs(Ctx, Count, Window, 0, []).

open_procs(_Ctx, 0, _Window, 0, Acc) ->
    Acc;
open_procs(Ctx, Left, Window, Pending, Acc) when Left > 0, Pending < Window ->
    Pid = spawn_link(fun() -> proc_owner(Ctx) end),
    open_procs(Ctx, Left - 1, Window, Pending + 1, [Pid | Acc]);
open_procs(Ctx, Left, Window, Pending, Acc) ->
    receive
        {up, _} -> open_procs(Ctx, Left, Window, Pending - 1, Acc)
    after 30000 -> fail("no handshake in 30 s (~b pending)", [Pending])
    end.

proc_owner(#{url := Url, driver := Driver, hist := H, coord := Coord}) ->
    {ok, Conn} = ws_port:connect(Url, #{driver => Driver, await => false, retry => false, connect_timeout => 60000}),
    receive
        {ws_port_up, Conn, _} -> Coord ! {up, self()};
        {ws_port_closed, Conn, R} -> fail("connection failed: ~p", [R])
    after 60000 -> fail("no handshake in 60 s", [])
    end,
    proc_loop(Conn, 0, H).

proc_loop(Conn, Next, H) ->
    receive
        {ws_port, Conn, {binary, <<Ts:64, Seq:32, _/binary>>}} ->
            record(H, os:system_time(nanosecond) - Ts),
            Seq =:= Next orelse counters:add(H, ?GAPS, Seq - Next),
            proc_loop(Conn, Seq + 1, H);
        {ws_port_closed, Conn, R} ->
            fail("a connection closed: ~p", [R]);
        Other ->
            fail("unexpected message: ~0p", [Other])
    end.

%% ---- one: a single owner holding every connection (it keeps receiving
%% while it opens them: a mailbox of unread messages would make every
%% selective receive slower)

open_one(Ctx, Count, Window) ->
    Owner = spawn_link(fun() -> one_owner(Ctx#{left => Count, pending => 0, window => Window}) end),
    receive
        {all_up, Owner} -> [Owner]
    after 600000 -> fail("connections not up in 600 s", [])
    end.

one_owner(#{left := Left, pending := Pending, window := Window, url := Url, driver := Driver} = S)
  when Left > 0, Pending < Window ->
    {ok, Conn} = ws_port:connect(Url, #{driver => Driver, await => false, retry => false, connect_timeout => 60000}),
    put(Conn, 0),
    one_owner(S#{left := Left - 1, pending := Pending + 1});
one_owner(#{hist := H, coord := Coord} = S) ->
    receive
        {ws_port, Conn, {binary, <<Ts:64, Seq:32, _/binary>>}} ->
            record(H, os:system_time(nanosecond) - Ts),
            case put(Conn, Seq + 1) of
                Seq -> ok;
                Next -> counters:add(H, ?GAPS, Seq - Next)
            end,
            one_owner(S);
        {ws_port_up, _, _} ->
            #{left := Left, pending := Pending} = S,
            Left =:= 0 andalso Pending =:= 1 andalso (Coord ! {all_up, self()}),
            one_owner(S#{pending := Pending - 1});
        {ws_port_closed, _, R} ->
            fail("a connection closed: ~p", [R]);
        Other ->
            fail("unexpected message: ~0p", [Other])
    end.

%% ---- FANIN_PROFILE=1: where the BEAM's time goes (on stderr): msacc
%% over the window, the driver's heap and mailbox (sampled every 10 ms:
%% the largest mailbox seen), the events socket's packets (messages per
%% packet), the driver's and owners' reductions. Off by default: msacc's
%% own cost is small but not nil.

profile_start(Driver) ->
    case os:getenv("FANIN_PROFILE") of
        "1" ->
            Ev = events_socket(Driver),
            msacc:start(),
            #{events => Ev, stat0 => sock_stat(Ev),
              red0 => red(Driver), gc0 => erlang:statistics(garbage_collection),
              cs0 => element(1, erlang:statistics(context_switches))};
        _ ->
            undefined
    end.

sampler_start(undefined, _Driver) ->
    undefined;
sampler_start(_, Driver) ->
    Self = self(),
    spawn_link(fun() -> sample(Driver, Self, 0, 0, 0) end).

sample(Driver, Parent, MaxQ, SumQ, N) ->
    receive
        {stop, Parent} -> Parent ! {sampled, MaxQ, SumQ / max(N, 1), N}
    after 10 ->
        {message_queue_len, Q} = process_info(Driver, message_queue_len),
        sample(Driver, Parent, max(Q, MaxQ), SumQ + Q, N + 1)
    end.

profile_stop(undefined, _, _, _) ->
    ok;
profile_stop(#{events := Ev, stat0 := St0, red0 := R0, gc0 := {Gc0, W0, _}, cs0 := Cs0},
             Sampler, Driver, Owners) ->
    msacc:stop(),
    Sampler ! {stop, self()},
    {MaxQ, AvgQ, _} = receive {sampled, A, B, C} -> {A, B, C} end,
    St1 = sock_stat(Ev),
    {Gc1, W1, _} = erlang:statistics(garbage_collection),
    Cs1 = element(1, erlang:statistics(context_switches)),
    Info = process_info(Driver, [heap_size, total_heap_size, message_queue_len,
                                 garbage_collection, current_function, status]),
    OwnerRed = lists:sum([R || O <- Owners, {reductions, R} <- [process_info(O, reductions)]]),
    io:format(standard_error,
              "fanin_bench profile: events socket ~p -> ~p~n"
              "  driver reductions in window ~b, owners' reductions total ~b~n"
              "  driver mailbox max ~b, mean ~.1f (10 ms samples); ~p~n"
              "  GCs in window ~b (~b words reclaimed), context switches ~b~n",
              [St0, St1, red(Driver) - R0, OwnerRed, MaxQ, AvgQ, Info,
               Gc1 - Gc0, W1 - W0, Cs1 - Cs0]),
    msacc:print(standard_error, msacc:stats(), #{system => true}),
    ok.

events_socket(Driver) ->
    %% #state{key, port, events, ...}
    element(4, sys:get_state(Driver)).

sock_stat(undefined) -> undefined;
sock_stat(S) ->
    case inet:getstat(S, [recv_cnt, recv_oct, recv_avg]) of
        {ok, L} -> L;
        _ -> undefined
    end.

red(Pid) ->
    {reductions, R} = process_info(Pid, reductions),
    R.

%% ---- histogram

record(H, Ns) ->
    Us = max(0, Ns) div 1000,
    B = if
            Us < 2048 -> Us;
            true -> min(2048 + (Us - 2048) div 64, ?HIST_N - 1)
        end,
    counters:add(H, B + 1, 1),
    counters:add(H, ?MSGS, 1).

snapshot(H) ->
    [counters:get(H, I) || I <- lists:seq(1, ?GAPS)].

value(B) when B < 2048 -> B;
value(B) -> 2048 + (B - 2048) * 64.

pct(Hist, Total, Q) ->
    Want = trunc(Total * Q),
    pct(Hist, 0, Want, 0).

pct([], B, _Want, _Acc) -> value(max(0, B - 1));
pct([C | Rest], B, Want, Acc) ->
    case Acc + C > Want of
        true -> value(B);
        false -> pct(Rest, B + 1, Want, Acc + C)
    end.

hmax(Hist) ->
    case [B || {B, C} <- lists:zip(lists:seq(0, length(Hist) - 1), Hist), C > 0] of
        [] -> 0;
        Bs -> value(lists:last(Bs))
    end.

%% ---- common (as ws_bench.escript)

start() ->
    add_code_path(),
    ok = application:load(ws_port),
    case os:getenv("WS_PORT_PROGRAM") of
        false -> ok;
        Prog -> application:set_env(ws_port, port_program, Prog)
    end,
    {ok, _} = application:ensure_all_started(ws_port),
    ok.

owner_of(OsPid) ->
    hd([Owner || P <- erlang:ports(),
                 {os_pid, O} <- [erlang:port_info(P, os_pid)], O =:= OsPid,
                 {connected, Owner} <- [erlang:port_info(P, connected)]]).

fail(Fmt, Args) ->
    io:format(standard_error, "fanin_bench: " ++ Fmt ++ "~n", Args),
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
