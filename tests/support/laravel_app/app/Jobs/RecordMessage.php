<?php

namespace App\Jobs;

use Illuminate\Bus\Queueable;
use Illuminate\Contracts\Queue\ShouldQueue;
use Illuminate\Foundation\Bus\Dispatchable;
use Illuminate\Queue\InteractsWithQueue;
use Illuminate\Queue\SerializesModels;
use Illuminate\Support\Facades\DB;

class RecordMessage implements ShouldQueue
{
    use Dispatchable, InteractsWithQueue, Queueable, SerializesModels;

    public function __construct(public string $message, public string $dispatchedBy)
    {
    }

    public function handle()
    {
        DB::table('processed_messages')->insert([
            'message' => $this->message,
            'dispatched_by' => $this->dispatchedBy,
            'processed_by' => config('app.version'),
            'processed_at' => now(),
        ]);
    }
}
