"""What the terminal does next: one transaction as a pure state machine. No Textual here.

Screens feed a flow what the holder typed and what the card answered; it answers with
the next view to show and, at times, a command for the worker (terminal/worker.py) to
run. PIN digits live in a flow only while they are being collected, and leave in exactly
one command.

    view.py      the view model: Stage, View, Line/line(), Tone; typed(), what a stage takes
    commands.py  what a flow asks the worker to run (ReadCard, Verify, ChangePin,
                 Presettle, Settle, RunOutlet, the clerk's) and the host's word on the
                 holder (Account)
    base.py      CardFlow: what every flow shares (results, notices, a card pulled out,
                 the new PIN's two steps)
    pharmacy.py  PharmacyFlow: a payment, a PIN change, the card's information
    outlet.py    OutletFlow: the service outlet's operations (--outlet)
    clerk.py     CancelFlow, DayEndFlow: the clerk's cancellation and end of day (menu
                 4 and 5 with a host; their stages are drawn there)
    receipt.py   Receipt: a payment's receipt, as screen lines and as the --receipts file

Stages and transitions, as the code makes them. [Command]: what the worker runs on the
way there; a command's failure (reader, card, host) ends on RESULT.

Payment (menu 1: PharmacyFlow, Purpose.PAY)
    AMOUNT          --Enter, not an amount------------------> AMOUNT (bad_amount)
    AMOUNT          --Enter, an amount----------------------> INSERT
    INSERT          --a card is in--------------------------> READING [ReadCard]
    READING         --read: lost, not activated, locked-----> RESULT
    READING         --read, with a host---------------------> PRESETTLING [Presettle, 2101]
    PRESETTLING     --refused (short account, lost), no host-> RESULT
    PRESETTLING     --the split-----------------------------> as READING below, the split and
                                                              个人支付 on every prompt after
    READING         --read: forced change (S8)--------------> NEW_PIN (forced_change)
    READING         --read: the PIN is in use---------------> PIN
    READING         --read: no PIN (S4)---------------------> CONFIRM_AMOUNT
    PIN             --Enter, not 6 digits-------------------> PIN
    PIN             --Enter, 6 digits-----------------------> WORKING [Verify]
    NEW_PIN         --Enter, breaks S15---------------------> NEW_PIN
    NEW_PIN         --Enter, passes S15---------------------> CONFIRM_PIN
    CONFIRM_PIN     --Enter, not the same-------------------> NEW_PIN (mismatch)
    CONFIRM_PIN     --Enter, the same-----------------------> WORKING [ChangePin, from 123456]
    WORKING         --wrong PIN-----------------------------> PIN (forced change: RESULT, S14)
    WORKING         --locked, not activated, refused--------> RESULT
    WORKING         --accepted------------------------------> authorised
    CONFIRM_AMOUNT  --Enter---------------------------------> authorised
    authorised: without a host RESULT (authorised); with one SETTLING [Settle, 2102 under
                a pending reversal] (a card that gave no number or ID: RESULT), then
                --the host's answer--> RESULT (a receipt, kept until 确认; a refusal; or,
                no answer, reversed: terminal/settlement.py)

PIN change (menu 2: PharmacyFlow, Purpose.CHANGE)
    INSERT          --a card is in--------------------------> READING [ReadCard]
    READING         --read: lost, not activated, locked-----> RESULT
    READING         --read: forced change (S8)--------------> NEW_PIN (forced_change)
    READING         --read: otherwise-----------------------> PIN (the current PIN)
    PIN             --Enter, not 6 digits-------------------> PIN
    PIN             --Enter, 6 digits-----------------------> NEW_PIN
    NEW_PIN, CONFIRM_PIN: as in a payment; the same twice --> WORKING [ChangePin, from the
                                                              current PIN, or 123456]
    WORKING         --wrong PIN-----------------------------> PIN (forced change: RESULT, S14)
    WORKING         --changed, locked, not activated, refused-> RESULT

Card information (menu 3: PharmacyFlow, Purpose.INFO)
    INSERT          --a card is in--------------------------> READING [ReadCard]
    READING         --read----------------------------------> INFO

Service outlet (--outlet, menu 1-4: OutletFlow)
    ID_NUMBER       --Enter, not a valid ID-----------------> ID_NUMBER (id_invalid)
    ID_NUMBER       --Enter, an ID--------------------------> INSERT
    INSERT          --a card is in--------------------------> READING [ReadCard]
    READING         --read: reset-pin, the card's ID--------> NEW_PIN
    READING         --read: another operation, or another---> WORKING [RunOutlet] (the outlet
                      holder's ID                                refuses a mismatch, logged)
    NEW_PIN         --Enter, breaks S15---------------------> NEW_PIN
    NEW_PIN         --Enter, passes S15---------------------> CONFIRM_PIN
    CONFIRM_PIN     --Enter, not the same-------------------> NEW_PIN (mismatch)
    CONFIRM_PIN     --Enter, the same-----------------------> WORKING [RunOutlet, new PIN]
    WORKING         --done, or refused----------------------> RESULT

Every flow
    INSERT: ReadCard is sent at once when a card is in, else when one is inserted.
    Escape on INSERT or where keys are taken (AMOUNT, ID_NUMBER, PIN, NEW_PIN,
      CONFIRM_PIN, CONFIRM_AMOUNT) ----------------------> RESULT, brief (cancelled)
    the holder's time runs out there -------------------> RESULT, brief (timed_out)
    the card pulled out on PIN, NEW_PIN, CONFIRM_PIN, CONFIRM_AMOUNT --> RESULT (removed)
      on READING or WORKING the removal waits for the command's answer: what the card
      did is shown first, then the removal counts as above
      on AMOUNT, ID_NUMBER, INSERT (the card not asked for yet) and SETTLING (the host's
      answer is awaited: money may move) nothing happens
    RESULT and INFO are final: 确认 ends the flow (the menu); so do Escape, the card taken
      out and the holder's time, except on a receipt (View.keep); a brief notice ends
      by itself.
"""
