<?php

namespace App\Http\Controllers;

use App\Jobs\RecordMessage;
use Illuminate\Http\Request;

class PageController extends Controller
{
    public function show()
    {
        // Encrypting proves APP_KEY is a usable key, not merely present.
        $key = decrypt(encrypt('ok')) === 'ok' ? 'ok' : 'broken';

        return response()
            ->view('page', [
                'version' => config('app.version'),
                'greeting' => config('app.greeting'),
                'key' => $key,
            ])
            ->header('Content-Type', 'text/plain; charset=UTF-8');
    }

    public function dispatchJob(Request $request)
    {
        $message = (string) $request->input('message', 'hello');
        RecordMessage::dispatch($message, (string) config('app.version'));

        return response()->json(['queued' => $message], 202);
    }
}
